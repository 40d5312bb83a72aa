"""Source values to snapshot storage values."""

from __future__ import annotations

from decimal import Decimal

import pytest

from app.sources import values


@pytest.mark.parametrize("value, zoned, expected", [
    ("2024-02-29 13:14:15", False, "2024-02-29T13:14:15"),
    ("2024-02-29 13:14:15.5", False, "2024-02-29T13:14:15.5"),
    ("2024-02-29 13:14:15", True, "2024-02-29T13:14:15Z"),
    ("2024-02-29 13:14:15.123+00", True, "2024-02-29T13:14:15.123Z"),
    ("2024-02-29 01:14:15+05:30", True, "2024-02-28T19:44:15Z"),
    ("2024-02-29 23:14:15-02", True, "2024-03-01T01:14:15Z"),
    ("0000-00-00 00:00:00", False, None),
    ("2024-00-10 00:00:00", False, None),
    ("infinity", True, None),
    ("0044-03-15 12:00:00 BC", False, None),
    (None, True, None),
])
def test_datetime_text(value, zoned, expected):
    assert values.datetime_text(value, zoned=zoned) == expected


@pytest.mark.parametrize("value, expected", [
    ("2024-02-29", "2024-02-29"), ("0000-00-00", None), ("2024-02-00", None),
    ("-infinity", None), (None, None),
])
def test_date_text(value, expected):
    assert values.date_text(value) == expected


@pytest.mark.parametrize("value, zoned, expected", [
    ("13:14:15", False, "13:14:15"), ("-01:02:03", False, "-01:02:03"),
    ("838:59:59", False, "838:59:59"), ("13:14:15+02", True, "11:14:15"),
    ("01:00:00.25+02", True, "23:00:00.25"), ("23:30:00-01:00", True, "00:30:00"),
    ("13:14:15+00", True, "13:14:15"), (None, True, None),
])
def test_time_text(value, zoned, expected):
    assert values.time_text(value, zoned=zoned) == expected


def test_scalars():
    assert values.to_bool(5) == 1 and values.to_bool(0) == 0 and values.to_bool(None) is None
    assert values.to_float(Decimal("1.25")) == 1.25 and values.to_float(None) is None
    assert values.to_bytes(memoryview(b"ab")) == b"ab"
    assert values.to_text(b"h\xc3\xa9") == "hé" and values.to_text(7) == "7"


def test_row_converter_touches_only_converted_columns():
    convert = values.row_converter([None, values.to_bool, None])
    assert convert((1, True, "x")) == (1, 1, "x")
    assert values.row_converter([None, None]) is tuple
