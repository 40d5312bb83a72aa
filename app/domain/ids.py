"""Parsing of ids that arrive as text, so a malformed id is a 400 and never reaches SQL."""

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


def get_owned(query, model, ident, principal, what: str):
    """The row `ident` of `query` if the caller owns it; 404 (never 403) otherwise."""
    row = query.where((model.id == parse_uuid(ident, f"{what} id")) &
                      (model.customer == principal.customer_id)).first()
    if row is None:
        raise NotFound(f"{what} {ident} was not found")
    return row
