"""`Idempotency-Key` at the HTTP edge: which requests carry one, and answers as stored and replayed.

The rules (which answers are kept, for how long, what a retry gets) are in
app/domain/idempotency.py and docs/api-hardening.md; app/api/mutations.py runs them.
"""

from __future__ import annotations

import json
import re

from app.domain.idempotency import Answer

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# The spec's bound on the header (components/parameters/IdempotencyKey): a UUID, a ULID or
# any other 1-255 characters of letters, digits and - _ . : ~ + / =.
KEY = re.compile(r"[A-Za-z0-9\-_.:~+/=]{1,255}")


def key_of(headers) -> str | None:
    """The request's idempotency key when it has a well-formed one (the spec refuses others with a 400)."""
    key = headers.get(HEADER)
    return key if key is not None and KEY.fullmatch(key) else None


def answer_of(result) -> Answer:
    """A handler's `body`, `(body, status)` or `(body, status, headers)` as an Answer with a JSON body."""
    body, status, headers = result, 200, {}
    if isinstance(result, tuple):
        body, status, *rest = result
        headers = dict(rest[0]) if rest and rest[0] else {}
    return Answer(int(status), {str(k): str(v) for k, v in headers.items()}, _json(body))


def replay(answer: Answer) -> tuple:
    """The stored answer as a handler result, marked as a replay."""
    return answer.body, answer.status, {**answer.headers, REPLAYED_HEADER: "true"}


def _json(body):
    """The body as JSON values (what a replay serialises again to the same bytes)."""
    return None if body is None else json.loads(json.dumps(body))
