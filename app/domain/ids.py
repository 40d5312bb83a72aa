"""Ids that arrive as text, and the caller's rows they name.

A malformed id is a 400 and never reaches SQL; another customer's row is a 404,
exactly like a missing one (never a 403: that would reveal it exists).
"""

from __future__ import annotations

import uuid

from app.domain.errors import InvalidRequest, NotFound


def parse_uuid(value, what: str = "id") -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise InvalidRequest(f"{what} must be a UUID, got {str(value)[:60]!r}") from None


def owned(model, principal, ident, what: str, *, lock: bool = False):
    """The caller's row `ident` of `model` (`model.owned_by`); 404 if there is none.

    With `lock`, the row stays locked until the transaction ends (`model.lock_owned`).
    """
    row_id = parse_uuid(ident, f"{what} id")
    if lock:
        row = model.lock_owned(principal.customer_id, row_id)
    else:
        row = model.find_owned(principal.customer_id, row_id)
    if row is None:
        raise NotFound(f"{what} {ident} was not found")
    return row
