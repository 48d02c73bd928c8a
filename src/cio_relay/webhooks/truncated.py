"""The fields of a webhook whose body was cut at the storage cap: what a JSON prefix still says.

An authentic webhook larger than the receiver keeps (a sent email with its whole HTML body in
``data.content``) is acknowledged like any other; the inbox stores the event's fields and marks
it truncated. This module reads those fields from the kept prefix: the top-level members, and
the members of ``data``, in order, until the one the cut went through. A member counts only when
the ``,`` or ``}`` after it was read, so a number or word cut short (``12`` of ``1234``) is
dropped rather than kept wrong. Customer.io puts ``event_id``, ``object_type``, ``metric`` and
``timestamp`` before ``data`` in its examples, and the identifiers before the body content, so
the event's fields are normally all there; when they are not, the intake quarantines the prefix.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["leading_fields"]

_DECODER = json.JSONDecoder()
_WHITESPACE = " \t\n\r"
#: The one member whose own members are read when the cut goes through it.
_NESTED = "data"


class _Cut(Exception):
    """The text ended (or stopped being JSON) here."""


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at] in _WHITESPACE:
        at += 1
    if at >= len(text):
        raise _Cut
    return at


def _members(text: str, at: int, into: dict[str, Any], *, nested: bool) -> int:
    """Decode the object starting at ``text[at]`` into ``into``; return the index after its
    ``}``. Raises ``_Cut`` where the text stops, ``into`` holding every whole member before."""
    if text[at] != "{":
        raise _Cut
    at = _skip_space(text, at + 1)
    if text[at] == "}":
        return at + 1
    while True:
        try:
            key, at = _DECODER.raw_decode(text, at)
        except json.JSONDecodeError:
            raise _Cut from None
        at = _skip_space(text, at)
        if not isinstance(key, str) or text[at] != ":":
            raise _Cut
        at = _skip_space(text, at + 1)
        if nested and key == _NESTED and text[at] == "{":
            inner: dict[str, Any] = {}
            into[key] = inner  # kept even when the cut goes through it: its members so far
            at = _members(text, at, inner, nested=False)
        else:
            try:
                value, at = _DECODER.raw_decode(text, at)
            except json.JSONDecodeError:
                raise _Cut from None
            at = _skip_space(text, at)
            if text[at] not in ",}":
                raise _Cut
            into[key] = value
        at = _skip_space(text, at)
        if text[at] == "}":
            return at + 1
        if text[at] != ",":
            raise _Cut
        at = _skip_space(text, at + 1)


def leading_fields(prefix: bytes) -> dict[str, Any] | None:
    """The members of the JSON object that ``prefix`` begins, as far as they are whole (and
    ``data``'s likewise); None when it does not begin a JSON object."""
    # A cut may split a UTF-8 sequence; only the cut member can hold it, and it is dropped.
    text = prefix.decode("utf-8", errors="replace")
    found: dict[str, Any] = {}
    try:
        at = _skip_space(text, 0)
        if text[at] != "{":
            return None
        _members(text, at, found, nested=True)
    except _Cut:
        pass
    return found
