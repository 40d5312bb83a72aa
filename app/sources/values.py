"""Source values to snapshot storage values (see app.contracts.artifact).

Both adapters read temporal values as the server's own ISO text (cheaper and
exact, and it keeps values Python's datetime cannot hold, such as year 10000),
so the normalisation below works on text.
"""

from __future__ import annotations

from datetime import UTC, datetime


def to_bool(value):
    return None if value is None else (1 if value else 0)


def to_float(value):
    return None if value is None else float(value)


def to_bytes(value):
    return None if value is None else bytes(value)


def to_text(value):
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _invalid_date(text: str) -> bool:
    # MySQL zero dates ('0000-00-00', '2024-00-00') and PostgreSQL infinities or
    # BC dates have no ISO 8601 form: they are stored as NULL.
    return (text[5:7] == "00" or text[8:10] == "00" or text.startswith("0000-")
            or text.endswith(" BC") or "infinity" in text)


def date_text(value):
    """'YYYY-MM-DD' or None."""
    if value is None:
        return None
    text = to_text(value)
    return None if _invalid_date(text) else text


def datetime_text(value, *, zoned: bool = False):
    """ISO 8601 'YYYY-MM-DDTHH:MM:SS[.ffffff]', in UTC with 'Z' when `zoned`.

    A zoned value may carry its offset ('+00', '+05:30'); it is moved to UTC.
    """
    if value is None:
        return None
    text = to_text(value)
    if _invalid_date(text):
        return None
    text = text.replace(" ", "T", 1)
    if not zoned:
        return text
    offset_at = max(text.rfind("+"), text.rfind("-"))
    if offset_at <= 10:          # no offset: the session is already in UTC
        return text + "Z"
    if text[offset_at:] in ("+00", "+00:00", "-00", "-00:00"):
        return text[:offset_at] + "Z"
    moment = datetime.fromisoformat(text).astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat() + "Z"


def zoned_datetime_text(value):
    """A timestamp with a time zone (MySQL TIMESTAMP, PostgreSQL timestamptz), in UTC with 'Z'."""
    return datetime_text(value, zoned=True)


def time_text(value, *, zoned: bool = False):
    """'HH:MM:SS[.ffffff]'; a zoned time (PostgreSQL timetz) is moved to UTC.

    MySQL TIME is a duration and may be negative or above 24 hours
    ('-01:00:00', '838:59:59'): it is kept as the server writes it.
    """
    if value is None:
        return None
    text = to_text(value)
    if not zoned:
        return text
    sign_at = max(text.rfind("+"), text.rfind("-"))
    if sign_at <= 0:
        return text
    clock, offset = text[:sign_at], text[sign_at:]
    parts = offset[1:].split(":")
    offset_seconds = int(parts[0]) * 3600 + (int(parts[1]) * 60 if len(parts) > 1 else 0) \
        + (int(parts[2]) if len(parts) > 2 else 0)
    if offset[0] == "-":
        offset_seconds = -offset_seconds
    if offset_seconds == 0:
        return clock
    hms, _, fraction = clock.partition(".")
    h, m, s = (int(part) for part in hms.split(":"))
    seconds = (h * 3600 + m * 60 + s - offset_seconds) % 86400
    result = f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    return f"{result}.{fraction}" if fraction else result


def zoned_time_text(value):
    """A time with a time zone (PostgreSQL timetz), in UTC."""
    return time_text(value, zoned=True)


def row_converter(converters):
    """One function turning a source row into a storage row.

    `converters` has one entry per column: a function, or None where the value
    is already in storage form (skipped, which keeps the per-row cost low).
    """
    active = [(index, fn) for index, fn in enumerate(converters) if fn is not None]
    if not active:
        return tuple

    def convert(row):
        values = list(row)
        for index, fn in active:
            values[index] = fn(values[index])
        return tuple(values)

    return convert
