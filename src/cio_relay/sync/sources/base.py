"""The ``Source`` protocol: the rows of a bulk sync, in key order, a batch at a time.

A source yields ``SourceRow``s ordered by the identifier column (keyset pagination: a run
resumes from its checkpoint's last key with ``after=``), in lists of ``batch_size``. Values are
already converted to what JSON carries (``attribute_value``); a value that cannot be is kept as
an ``Unconvertible`` so the row is reported invalid (id, column, reason) instead of stopping
the run. ``without_password`` makes a source URL fit for messages and ``description``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["Source", "SourceRow", "Unconvertible", "without_password"]

#: Query parameters that carry a secret in a libpq URL (``?password=...``).
_SECRET_PARAMETERS = frozenset({"password", "sslpassword"})


class Unconvertible:
    """A column value JSON cannot carry (bytes, say): the row is reported, not sent.

    Not a dataclass on purpose: orjson would write a dataclass as an object, while this must
    make the row's serialisation fail, which is how a bulk sync notices it at no cost to the
    rows without one."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unconvertible) and other.reason == self.reason

    def __hash__(self) -> int:
        return hash(self.reason)

    def __repr__(self) -> str:
        return f"Unconvertible({self.reason!r})"


@dataclass(frozen=True, slots=True)
class SourceRow:
    """One person: ``key`` is the identifier column's value as the source orders it (int or
    str, or a UUID; its ``str`` is the identifier sent), ``attributes`` every other column (None
    for SQL NULL), ``updated_at`` the updated-at column in Unix seconds (None when not named).

    A key of another type (a SQLite REAL, say) or an updated-at that is not a time stays in
    ``attributes`` under its column as an ``Unconvertible``: the row is reported invalid, and
    its key still serves as ``after=`` to move past it."""

    key: Any
    attributes: dict[str, Any]
    updated_at: float | None = None


class Source(Protocol):
    """Where a bulk sync's rows come from (module docstring)."""

    #: For reports and logs: the source without any password.
    description: str

    def batches(
        self, *, after: Any | None, since: float | None, batch_size: int
    ) -> Iterator[list[SourceRow]]:
        """Rows with key > ``after`` (None: from the first) and, when ``since`` is given,
        updated-at > ``since``, ordered by key, in lists of at most ``batch_size``."""
        ...

    def newest_updated_at(self) -> float | None:
        """The newest updated-at of the source's rows now (Unix seconds); None without an
        updated-at column or rows. An incremental run's watermark never passes it."""
        ...

    def close(self) -> None: ...


def without_password(url: str) -> str:
    """``url`` with any password removed (from ``user:password@`` and ``?password=``)."""
    try:
        parts = urlsplit(url)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        kept = [(key, value) for key, value in pairs if key.lower() not in _SECRET_PARAMETERS]
        if parts.password is None and len(kept) == len(pairs):
            return url
        netloc = parts.netloc
        if parts.password is not None:
            credentials, _, host = netloc.rpartition("@")
            netloc = f"{credentials.partition(':')[0]}@{host}"
        return urlunsplit(parts._replace(netloc=netloc, query=urlencode(kept)))
    except ValueError:  # not even a URL (an invalid port ...): show nothing that might be secret
        return url.partition("://")[0] + "://..." if "://" in url else "(unparsable)"
