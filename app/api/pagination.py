"""The HTTP side of paginated lists: the bare array as the body, the next page in a `Link` header."""

from __future__ import annotations

from urllib.parse import urlencode

import flask

from app.domain.pagination import Page


def paginated(page: Page):
    """(body, 200, headers) for a list handler: the page's items, and `Link: <…>; rel="next"` unless it is the last.

    The link is this request's path and query (filters and `limit` kept) with the
    next `cursor`, as a path-absolute reference, so it holds behind a proxy that
    keeps paths whatever host and scheme the client used.
    """
    headers = {}
    if page.next_cursor is not None:
        headers["Link"] = f'<{next_page_url(page.next_cursor)}>; rel="next"'
    return page.items, 200, headers


def next_page_url(cursor: str) -> str:
    request = flask.request
    query = [(name, value) for name, value in request.args.items(multi=True) if name != "cursor"]
    query.append(("cursor", cursor))
    return f"{request.script_root}{request.path}?{urlencode(query)}"
