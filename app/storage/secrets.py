"""Encryption at rest for stored secrets (Fernet, rotatable with MultiFernet)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

log = logging.getLogger(__name__)

KEY_FILE_NAME = "secret.key"


class SecretBox:
    """Encrypts with the first key, decrypts with any: add a key in front to rotate."""

    def __init__(self, keys: list[str] | tuple[str, ...]):
        if not keys:
            raise ValueError("at least one encryption key is needed")
        fernets = [Fernet(k.encode() if isinstance(k, str) else k) for k in keys]
        self._newest = fernets[0]
        self._fernet = MultiFernet(fernets)

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            # Never echo the token: it is the secret's ciphertext.
            raise ValueError("stored secret cannot be decrypted with the configured keys") from None

    def rotate(self, token: str) -> str:
        """Re-encrypt `token` under the newest key."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise ValueError("stored secret cannot be decrypted with the configured keys") from None

    def is_current(self, token: str) -> bool:
        """True when `token` is encrypted under the newest key (rotating it would change nothing)."""
        try:
            self._newest.decrypt(token.encode())
        except InvalidToken:
            return False
        return True


def load_secret_box(secret_keys: tuple[str, ...], data_dir: Path, *, embedded: bool) -> SecretBox:
    """Keys from REFLEXDB_SECRET_KEYS; in embedded mode a 0600 key file made on first run."""
    if secret_keys:
        return SecretBox(secret_keys)
    if not embedded:
        raise RuntimeError(
            "REFLEXDB_SECRET_KEYS must be set when DATABASE_URL is set "
            "(generate one with: reflexdb secrets generate-key)"
        )
    return SecretBox([_embedded_key(data_dir / KEY_FILE_NAME)])


def _embedded_key(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: two processes starting at once never write two different keys.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    key = Fernet.generate_key().decode()
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    log.info("created encryption key file %s", path)
    return key
