"""Query keys: minted by the control plane, checked by the instance on its own.

A query key is `rxk_<keyId>.<mac>` where `mac` is HMAC-SHA256 over the keyId
(UTF-8) keyed with the database's secret (UTF-8), encoded as URL-safe base64
without padding (43 characters). `keyId` is 1-64 of `[A-Za-z0-9_-]`.

The control plane writes, atomically (temp file + rename) and readable by its
owner only, a keys file per database:

    {"secret": "<per-database secret>",
     "keys": {"<keyId>": {"expiresAt": null | "2030-01-01T00:00:00Z"}}}

The instance (app.instance.keys.KeyStore) re-reads it when it changes, so a key
removed from the file stops working within seconds without the instance ever
calling the control plane.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import datetime

from app.contracts.files import write_atomic
from app.contracts.timestamps import parse_rfc3339

KEY_PREFIX = "rxk_"
KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
TOKEN_PATTERN = re.compile(r"rxk_([A-Za-z0-9_-]{1,64})\.([A-Za-z0-9_-]{43})")


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
    """Write a keys file atomically, readable by its owner only (it holds the secret):
    `keys` maps keyId -> expiresAt (RFC 3339) or None."""
    data = {"secret": secret, "keys": {k: {"expiresAt": v} for k, v in keys.items()}}
    write_atomic(path, json.dumps(data), private=True)


@dataclass(frozen=True)
class KeySet:
    secret: str
    expires: dict[str, datetime | None]


def parse_keys_file(data: dict) -> KeySet:
    """The parsed content of a keys file; raises on anything malformed."""
    secret = data["secret"]
    if not isinstance(secret, str):
        raise TypeError("secret must be a string")
    expires: dict[str, datetime | None] = {}
    for key_id, entry in (data.get("keys") or {}).items():
        raw = (entry or {}).get("expiresAt")
        expires[key_id] = None if raw is None else parse_rfc3339(raw)
    return KeySet(secret, expires)


__all__ = ["KEY_PREFIX", "KEY_ID_PATTERN", "TOKEN_PATTERN", "KeySet", "make_query_key", "parse_keys_file",
           "query_key_mac", "write_keys_file"]
