"""Entity tags of connections and databases, and `If-Match` preconditions on them (RFC 9110 §8.8.3, §13.1.1).

A resource's ETag is a hash of its own representation: every field GET shows for it
(status and health included, embedded resources left out), so it changes whenever
any of them does, whoever wrote it (a PATCH, a lifecycle action, the engine). A
service compares it under the row lock it writes under, so the check and the write
are one step.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable

from app.domain.errors import InvalidRequest, PreconditionFailed

# One entity tag of an If-Match list: an optional weak marker and a quoted opaque tag.
_ENTITY_TAG = re.compile(r'\s*(W/)?"([\x21\x23-\x7e]*)"\s*(?:,|$)')
_MALFORMED = ('If-Match: must be "*" or a comma-separated list of quoted entity tags '
              'as the ETag header gave them, e.g. If-Match: "5f0c…"')


def etag(representation: dict) -> str:
    """The strong ETag of a resource's representation: a quoted hash of its fields."""
    text = json.dumps(representation, sort_keys=True, separators=(",", ":"), default=str)
    return '"' + hashlib.sha256(text.encode()).hexdigest()[:32] + '"'


def ensure_matches(if_match: str | None, representation: Callable[[], dict], what: str) -> None:
    """412 precondition_failed unless `if_match` (None: no precondition) matches the current ETag.

    `representation()` gives the resource as answers show it, built only when there is a
    precondition to check (a write runs this under its row lock). Strong comparison: a weak
    tag (`W/"…"`) never matches; `*` matches any existing resource.
    """
    if if_match is None or if_match.strip() == "*":
        return
    current = etag(representation())
    if current not in parse_if_match(if_match):
        raise PreconditionFailed(
            f"{what} has changed since you read it (If-Match {if_match.strip()[:100]}, its ETag is "
            f"now {current}); nothing was changed. GET it again, reapply your change and retry.")


def parse_if_match(header: str) -> list[str]:
    """The strong tags of an If-Match list, quotes included; 400 when the header is malformed."""
    tags, position = [], 0
    while position < len(header):
        match = _ENTITY_TAG.match(header, position)
        if match is None or match.end() == position:
            raise InvalidRequest(_MALFORMED)
        if match.group(1) is None:
            tags.append(f'"{match.group(2)}"')
        position = match.end()
    if not tags and not header.strip():
        raise InvalidRequest(_MALFORMED)
    return tags
