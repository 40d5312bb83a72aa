"""Conditional requests: the `If-Match` a client sends, for the service to compare under its row lock."""

from __future__ import annotations

import flask


def if_match() -> str | None:
    """The request's If-Match header, None when absent (then the write is unconditional)."""
    return flask.request.headers.get("If-Match")
