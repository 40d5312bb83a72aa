"""Keyset pagination of list answers, in (created_at, id) order.

A list service builds its query (ownership and filters), then hands it over:

    return pagination.page(query, limit, cursor, schemas.ThingSchema(many=True).dump)

`page` fetches one row more than `limit` to learn whether a next page exists, so
a page is one SQL statement whatever the size of the list. The cursor is the
(created_at, id) of the last row shown, opaque to clients; the next page starts
strictly after it. A row inserted or deleted meanwhile never shifts another:
a walk sees every row that existed throughout it exactly once. Each list needs an
index ending in (created_at, id) after its equality filters (see
app/storage/migrations/0004_list_order_indexes.py).

A page also stops early, before MAX_PAGE_BYTES of JSON (never before its first
item), so no answer outgrows it whatever its items hold: text fields at their
maximum, escaped as JSON, can make one item 50 to 100 times its usual size.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import struct
import uuid
from dataclasses import dataclass
from typing import Callable

from peewee import ModelSelect, Tuple

from app.domain.errors import InvalidRequest

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# A page's items stop before their JSON passes this (1 MiB, as a request body):
# an answer is at most this plus one item (a Connection, the largest, is under 90 KB).
MAX_PAGE_BYTES = 1024 * 1024

# Cursor layout: version byte, created_at as signed microseconds since the epoch, id.
_CURSOR = struct.Struct(">bq16s")
_CURSOR_VERSION = 1
_EPOCH = dt.datetime(1970, 1, 1)
# base64url of the 25 bytes above, unpadded.
_CURSOR_TEXT = re.compile(r"[A-Za-z0-9_-]{34}")
_BAD_CURSOR = ("cursor: not a cursor this API issued; pass the one from the previous page's "
               "Link header, or leave it out to start at the first page")


@dataclass(frozen=True)
class Page:
    """One page of a list: its items, dumped, and the cursor of the next page (None on the last)."""

    items: list
    next_cursor: str | None


def page(query: ModelSelect, limit: int | None, cursor: str | None, dump: Callable[[list], list]) -> Page:
    """The page of `query` after `cursor` (from the start when None), at most `limit` rows, dumped by `dump`."""
    limit = checked_limit(limit)
    model = query.model
    order = (model.created_at, model.id)
    if cursor is not None:
        created_at, row_id = decode_cursor(cursor)
        # A row comparison, which an index on (…, created_at, id) answers as a range scan.
        # The values go through the fields' converters: SQLite stores ids as hex text.
        query = query.where(Tuple(*order) > Tuple(model.created_at.db_value(created_at),
                                                  model.id.db_value(row_id)))
    return page_of_rows(list(query.order_by(*order).limit(limit + 1)), limit, dump)


def page_of_rows(rows: list, limit: int, dump: Callable[[list], list]) -> Page:
    """The page of `rows`, the first `limit + 1` rows of a query in (created_at, id) order
    (one more than the page, to learn whether a next one exists), dumped by `dump`."""
    more = len(rows) > limit
    rows = rows[:limit]
    items = dump(rows)
    fitting = items_within(items, MAX_PAGE_BYTES)
    if fitting < len(items):
        rows, items, more = rows[:fitting], items[:fitting], True
    return Page(items, encode_cursor(rows[-1].created_at, rows[-1].id) if more else None)


def items_within(items: list, budget: int) -> int:
    """How many of `items`, from the first, fit in `budget` bytes as a compact JSON array (at least one).

    Measured as the API writes JSON (compact, non-ASCII escaped), so the count is exact.
    """
    total = 1   # "[" and "]", less the comma the first item does not need
    for count, item in enumerate(items):
        total += len(json.dumps(item, separators=(",", ":"))) + 1
        if total > budget and count > 0:
            return count
    return len(items)


def checked_limit(limit: int | None) -> int:
    """`limit`, or the default when None; 400 outside 1…MAX_LIMIT (the spec says the same for HTTP)."""
    if limit is None:
        return DEFAULT_LIMIT
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit: must be an integer from 1 to {MAX_LIMIT}, got {limit!r}")
    return limit


def encode_cursor(created_at: dt.datetime, row_id: uuid.UUID) -> str:
    """The opaque cursor of the position just after (created_at, row_id)."""
    micros = (created_at - _EPOCH) // dt.timedelta(microseconds=1)
    raw = _CURSOR.pack(_CURSOR_VERSION, micros, uuid.UUID(str(row_id)).bytes)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> tuple[dt.datetime, uuid.UUID]:
    """The (created_at, id) a cursor stands for; 400 naming `cursor` when it is not one of ours."""
    if not isinstance(cursor, str) or not _CURSOR_TEXT.fullmatch(cursor):
        raise InvalidRequest(_BAD_CURSOR)
    version, micros, id_bytes = _CURSOR.unpack(base64.urlsafe_b64decode(cursor + "=="))
    try:
        if version != _CURSOR_VERSION:
            raise ValueError(version)
        return _EPOCH + dt.timedelta(microseconds=micros), uuid.UUID(bytes=id_bytes)
    except (ValueError, OverflowError):
        raise InvalidRequest(_BAD_CURSOR) from None
