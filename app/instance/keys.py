"""The instance's side of query keys: `KeyStore` checks them against the keys file.

The format (key, mac, keys file) is in app.contracts.query_keys. The store
re-reads the file when its mtime (or size) changes, at most about once a
second, so a key removed from the file stops working within a few seconds
without the instance ever calling the control plane.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import threading
import time
from datetime import datetime, timezone

from app.contracts.query_keys import TOKEN_PATTERN, KeySet, parse_keys_file, query_key_mac

log = logging.getLogger(__name__)

RECHECK_SECONDS = 1.0


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
        self._keys = KeySet("", {})
        self.load_error: str | None = None

    def verify(self, token: str | None) -> bool:
        """True when `token` is a well-formed, known, unexpired query key."""
        keys = self._current()
        if not token or not keys.secret:
            return False
        match = TOKEN_PATTERN.fullmatch(token)
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

    def _current(self) -> KeySet:
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
            self._keys = KeySet("", {})
            self._stamp = None
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return
        try:
            with open(self.path, encoding="utf-8") as f:
                self._keys = parse_keys_file(json.load(f))
            self._stamp = stamp
            self._set_error(None)
            log.info("keys file loaded: %d key(s)", len(self._keys.expires))
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            # A half-written or broken file fails closed rather than open.
            self._keys = KeySet("", {})
            self._stamp = stamp
            self._set_error(f"keys file {self.path} is invalid: {type(exc).__name__}")

    def _set_error(self, message: str | None) -> None:
        if message and message != self.load_error:
            log.warning("%s", message)
        self.load_error = message


__all__ = ["KeyStore"]
