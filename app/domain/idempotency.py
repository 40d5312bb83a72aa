"""Idempotency keys: the first answer to a request sent with a key, replayed to its retries (Stripe's model).

The HTTP edge (app/api/mutations.py) runs a POST that carries `Idempotency-Key` in one
transaction: `claim` the key, run the operation, `complete` the key with its answer,
commit. The claim and the operation's effects therefore commit together or not at all:

- a retry after the commit finds the answer and gets it replayed, however the first
  client lost it (a timeout, a dropped connection): never a second effect;
- a duplicate that arrives while the first runs waits for the first transaction
  (PostgreSQL: on the unique index (customer_id, key); SQLite: on the write lock that
  every transaction takes), then finds its answer;
- an operation that fails with a 5xx rolls back with its claim, so a retry runs afresh.

Keys belong to an account (any of its management keys may retry) and expire after a
configurable time (24 hours by default). The stored answer, and the fingerprint of the
request it answered, are encrypted at rest like source passwords: the answer may hold a
key that is shown once, and a bare hash of a body that holds a password could be guessed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field

from app.domain.environment import current
from app.domain.errors import Conflict
from app.storage.database import is_sqlite
from app.storage.models import IdempotencyRecord, utcnow

DEFAULT_TTL = dt.timedelta(hours=24)
# Expired records of the account are deleted this many at a time, by each claim.
SWEEP_BATCH = 100


@dataclass(frozen=True)
class Answer:
    """An answer as the edge replays it: status, the headers worth replaying (Location, ETag), the JSON body."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: object = None


def fingerprint(method: str, path: str, body) -> str:
    """What makes two requests the same: method, path (with its query) and the JSON body, key order aside."""
    canonical = json.dumps([method.upper(), path, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def claim(customer_id, key: str, request_fingerprint: str, operation_id: str,
          ttl: dt.timedelta = DEFAULT_TTL) -> Answer | None:
    """Take `key` for this request (None) or return the answer stored for it; in the caller's transaction.

    Raises Conflict `idempotency_key_reused` when the key was used for another request.
    """
    now = utcnow()
    expired = (IdempotencyRecord.customer == customer_id) & (IdempotencyRecord.expires_at <= now)
    oldest = (IdempotencyRecord.select(IdempotencyRecord.id).where(expired)
              .order_by(IdempotencyRecord.expires_at).limit(SWEEP_BATCH))
    if not is_sqlite():
        # Two requests of the account sweeping at once split the batch rather than wait for each other.
        oldest = oldest.for_update(skip_locked=True)
    # An expired record of this key frees it; a batch of the account's other expired ones goes too.
    IdempotencyRecord.delete().where(
        expired & ((IdempotencyRecord.key == key) | IdempotencyRecord.id.in_(oldest))).execute()
    claimed = (IdempotencyRecord.insert(customer=customer_id, key=key, operation_id=operation_id,
                                        created_at=now, expires_at=now + ttl)
               .on_conflict_ignore().as_rowcount().execute())
    if claimed:
        return None
    # The key's first request has committed (a concurrent one waited on the insert above).
    record = (IdempotencyRecord.select()
              .where((IdempotencyRecord.customer == customer_id) & (IdempotencyRecord.key == key)).first())
    stored = json.loads(current().secret_box.decrypt(record.response_encrypted))
    if stored["fingerprint"] != request_fingerprint:
        raise Conflict(
            f"Idempotency-Key {key!r} was already used for another request (another operation, path "
            f"or body) in the last {_duration(ttl)}; send a new key for a new request",
            "idempotency_key_reused",
        )
    return Answer(stored["status"], stored["headers"], stored["body"])


def complete(customer_id, key: str, request_fingerprint: str, answer: Answer) -> None:
    """Store the answer of the request that claimed `key`, in the transaction of its claim."""
    stored = {"fingerprint": request_fingerprint, "status": answer.status, "headers": answer.headers,
              "body": answer.body}
    token = current().secret_box.encrypt(json.dumps(stored, separators=(",", ":")))
    (IdempotencyRecord.update(response_encrypted=token)
     .where((IdempotencyRecord.customer == customer_id) & (IdempotencyRecord.key == key)).execute())


def _duration(ttl: dt.timedelta) -> str:
    seconds = int(ttl.total_seconds())
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{seconds} seconds"
