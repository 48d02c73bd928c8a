"""Whole numbers from untrusted text: the one way text becomes an ``int`` in cio-relay.

``str.isdigit()`` is true for "²", "١٢" and every other Unicode digit, which ``int()`` then
refuses (a 500) or reads as another number ("١٢" is 12); and ``int()`` refuses text of more
than 4,300 digits. So a path segment, a query parameter, a cookie or a header becomes a number
only through ``whole_number``: ASCII digits and nothing else, at most ``max_digits`` of them.
"""

from __future__ import annotations

__all__ = ["DEFAULT_MAX_DIGITS", "whole_number"]

#: Enough for any count, offset, id or Unix time in milliseconds; far below int()'s limit.
DEFAULT_MAX_DIGITS = 18


def whole_number(text: str | bytes | None, *, max_digits: int = DEFAULT_MAX_DIGITS) -> int | None:
    """``text`` as a non-negative int if it is 1 to ``max_digits`` ASCII digits, else None.

    >>> whole_number("42"), whole_number("²"), whole_number("-1"), whole_number("1" * 19)
    (42, None, None, None)
    """
    if text is None or not 0 < len(text) <= max_digits:
        return None
    # bytes.isdigit() is ASCII-only; str.isdigit() is not.
    ok = text.isdigit() if isinstance(text, bytes) else text.isascii() and text.isdigit()
    return int(text) if ok else None
