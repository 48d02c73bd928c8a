"""Payloads as JSON, refused where JSON would not carry them as given.

orjson writes ``NaN``, ``Infinity`` and ``-Infinity`` as ``null`` without a word, and pydantic
reads them (and ``1e400``, which overflows to infinity) from a request body into any ``Any``
field: an event's ``{"total": NaN}`` would reach Customer.io as ``{"total": null}``. The
operation builders already serialise every payload once, to measure it; ``dumps`` is that
serialisation, which also refuses such numbers, naming where they are (``data.total``,
``message_data.items[2].price``).

A non-finite number can only have become ``null``, so the payload is searched for one only
when its JSON holds ``null`` at all: one substring search over bytes that were written anyway.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import orjson

from cio_relay.errors import ValidationError

__all__ = ["dumps"]

#: orjson refuses deeper nesting; the search for a culprit stops there too (a cycle ends it).
_MAX_DEPTH = 255
#: Keys are shown up to this many characters in a field's name.
_KEY_CHARS = 40
#: A field's whole name is cut there (a deeply nested value has a long way to it).
_FIELD_CHARS = 200
_INT_RANGE = range(-(2**63), 2**64)  # what orjson writes; beyond it, it refuses


def dumps(value: Any, field: str, key: str | None = None, option: int = 0) -> bytes:
    """``orjson.dumps(value)``, or ``ValidationError`` naming where under ``field`` (a prefix,
    "" for none; ``key`` is appended as ``field.key``, a name only built for an error) a value
    is that JSON cannot carry: a non-finite number, an integer past 64 bits, a key that is not
    a string, anything else orjson refuses. ``option``: orjson's (sorted keys, say)."""
    try:
        encoded = orjson.dumps(value, option=option) if option else orjson.dumps(value)
    except TypeError as exc:
        found = _first_unstorable(value)
        where, why = found if found is not None else ("", f"is not JSON-serialisable: {exc}")
        raise ValidationError(_joined(field, key, where), why) from None
    # bytes.find: CPython's ``in`` on bytes costs about twice as much (buffer protocol).
    if encoded.find(b"null") >= 0 and value is not None:
        found = _first_unstorable(value)
        if found is not None:
            raise ValidationError(_joined(field, key, found[0]), found[1])
    return encoded


def _joined(field: str, key: str | None, where: str) -> str:
    if key is not None:
        field = f"{field}.{_key(key)}" if field else _key(key)
    joined = (field + where if field else where.removeprefix(".")) or "body"
    return joined if len(joined) <= _FIELD_CHARS else f"{joined[:_FIELD_CHARS]}..."


def _key(key: str) -> str:
    return key if len(key) <= _KEY_CHARS else f"{key[:_KEY_CHARS]}..."


def _first_unstorable(value: Any) -> tuple[str, str] | None:
    """Where (``.a[2].b``, "" for ``value`` itself) the first value JSON cannot carry is, in
    document order, and why; None if there is none."""
    stack: list[tuple[str, Any, int]] = [("", value, 0)]
    while stack:
        where, item, depth = stack.pop()
        kind = type(item)
        if kind is str or item is None or kind is bool:
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                return where, f"must be a finite number; {item} has no JSON form"
        elif isinstance(item, int):
            if item not in _INT_RANGE:
                return where, "is an integer past 64 bits, which JSON readers do not keep exactly"
        elif depth >= _MAX_DEPTH and isinstance(item, Mapping | list | tuple):
            return where, f"is nested more than {_MAX_DEPTH} levels deep"
        elif kind is dict or isinstance(item, Mapping):
            children: list[tuple[str, Any, int]] = []
            for key, child in item.items():
                if not isinstance(key, str):
                    return where, f"has a key that is not a string: {key!r:.{_KEY_CHARS}}"
                children.append((f"{where}.{_key(key)}", child, depth + 1))
            stack.extend(reversed(children))
        elif isinstance(item, list | tuple):
            stack.extend(
                (f"{where}[{i}]", item[i], depth + 1) for i in range(len(item) - 1, -1, -1)
            )
    return None
