"""Query keys: minted by the control plane, checked by the instance on its own.

A query key is `rxk_<keyId>.<mac>` where `mac` is HMAC-SHA256 over the keyId
(UTF-8) keyed with the database's secret (UTF-8), encoded as URL-safe base64
without padding (43 characters). `keyId` is 1-64 of `[A-Za-z0-9_-]`.

The control plane writes, atomically (temp file + rename), a keys file per
database:

    {"secret": "<per-database secret>",
     "keys": {"<keyId>": {"expiresAt": null | "2030-01-01T00:00:00Z"}}}

The instance re-reads it when its mtime (or size) changes, at most about once a
second, so a key removed from the file stops working within a few seconds
without the instance ever calling the control plane.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone

log = logging.getLogger(__name__)

KEY_PREFIX = "rxk_"
KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TOKEN_PATTERN = re.compile(r"rxk_([A-Za-z0-9_-]{1,64})\.([A-Za-z0-9_-]{43})")
RECHECK_SECONDS = 1.0


def query_key_mac(secret: str, key_id: str) -> str:
    """The mac part of a query key: urlsafe base64 (no padding) of HMAC-SHA256."""
    digest = hmac.new(secret.encode(), key_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def make_query_key(secret: str, key_id: str) -> str:
    """The full query key `rxk_<keyId>.<mac>` for `key_id` under a database secret."""
    if not KEY_ID_PATTERN.fullmatch(key_id):
        raise ValueError("keyId must be 1-64 characters of A-Z a-z 0-9 _ -")
    if not secret:
        raise ValueError("the database secret must not be empty")
    return f"{KEY_PREFIX}{key_id}.{query_key_mac(secret, key_id)}"


def write_keys_file(path: str, secret: str, keys: dict[str, str | None]) -> None:
    """Write a keys file atomically: `keys` maps keyId -> expiresAt (RFC 3339) or None."""
    data = {"secret": secret, "keys": {k: {"expiresAt": v} for k, v in keys.items()}}
    tmp = f"{path}.tmp{os.getpid()}.{threading.get_ident()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.replace(tmp, path)


@dataclass(frozen=True)
class _KeySet:
    secret: str
    expires: dict[str, datetime | None]


class KeyStore:
    """Checks query keys against the keys file, re-reading it when it changes."""

    def __init__(self, path: str, *, recheck_seconds: float = RECHECK_SECONDS,
                 clock=time.monotonic):
        self.path = path
        self._recheck = recheck_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._checked_at = float("-inf")
        self._keys = _KeySet("", {})
        self.load_error: str | None = None

    def verify(self, token: str | None) -> bool:
        """True when `token` is a well-formed, known, unexpired query key."""
        keys = self._current()
        if not token or not keys.secret:
            return False
        match = _TOKEN_PATTERN.fullmatch(token)
        if not match:
            return False
        key_id, mac = match.groups()
        # The mac is compared before the key's status is looked at, and in
        # constant time, so timing tells nothing about a guessed mac.
        good = hmac.compare_digest(query_key_mac(keys.secret, key_id).encode(), mac.encode())
        if key_id not in keys.expires:
            return False
        expires_at = keys.expires[key_id]
        if expires_at is not None and expires_at <= datetime.now(timezone.utc):
            return False
        return good

    def refresh(self) -> None:
        """Re-read the keys file now if it changed."""
        with self._lock:
            self._reload_if_changed()

    def _current(self) -> _KeySet:
        now = self._clock()
        if now - self._checked_at >= self._recheck:
            with self._lock:
                if now - self._checked_at >= self._recheck:
                    self._reload_if_changed()
                    self._checked_at = now
        return self._keys

    def _reload_if_changed(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            # No file means no valid key: fail closed.
            self._set_error(f"keys file {self.path} is not readable: {exc.strerror}")
            self._keys = _KeySet("", {})
            self._stamp = None
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return
        try:
            with open(self.path, encoding="utf-8") as f:
                self._keys = _parse_keys(json.load(f))
            self._stamp = stamp
            self._set_error(None)
            log.info("keys file loaded: %d key(s)", len(self._keys.expires))
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            # A half-written or broken file fails closed rather than open.
            self._keys = _KeySet("", {})
            self._stamp = stamp
            self._set_error(f"keys file {self.path} is invalid: {type(exc).__name__}")

    def _set_error(self, message: str | None) -> None:
        if message and message != self.load_error:
            log.warning("%s", message)
        self.load_error = message


def _parse_keys(data: dict) -> _KeySet:
    secret = data["secret"]
    if not isinstance(secret, str):
        raise TypeError("secret must be a string")
    expires: dict[str, datetime | None] = {}
    for key_id, entry in (data.get("keys") or {}).items():
        raw = (entry or {}).get("expiresAt")
        expires[key_id] = None if raw is None else _parse_time(raw)
    return _KeySet(secret, expires)


def _parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value


__all__ = ["KeyStore", "make_query_key", "query_key_mac", "write_keys_file"]
