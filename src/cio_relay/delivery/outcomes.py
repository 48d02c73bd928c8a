"""What a failed request means for its operation: retry it, or dead-letter it and why.

Pure decisions (design.md contracts 2 and 4); the dispatcher carries them out:

- Retryable (connect refused, 408, 429, 5xx): retry later with full-jitter backoff; a
  ``Retry-After`` is a floor for the op and pauses the whole API family. For a transactional
  send or a broadcast trigger, a 5xx other than 503 counts as ambiguous (below): the server may
  have failed after processing it, or a gateway may have lost its answer (502, 504), so only
  408, 429, 503 and connection failures before the write say it was not sent.
- Permanent 4xx: dead-letter with the response as the reason. A whole v2 batch refused with a
  400 is bisected so that one bad item does not take down its neighbours (``refused_whole``).
  401/403 are the exception: they say the credentials are wrong, not the operation, so they are
  retried with backoff (and logged loudly) until the attempt/age caps instead of emptying the
  queue into the dead-letter queue during a key rotation.
- Wrong region (``WrongRegionError``: the App API's 301 "wrong datacenter", a Track redirect to
  the other region's host): ``Pause``. The setting is wrong, not the operation, and it was not
  processed: the operation stays in the outbox and its API family pauses (``region.py``); a
  v2 batch refused so is not bisected either.
- Ambiguous (timeout or lost connection after the request was written): idempotent operations
  (Track: identify is a PUT, events carry their op id as ``id``) are retried; transactional sends
  and broadcast triggers are dead-lettered as ``ambiguous`` for an operator, unless
  ``retry_ambiguous`` is set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cio_relay.errors import (
    AmbiguousError,
    ApiError,
    PermanentError,
    RetryableError,
    WrongRegionError,
)
from cio_relay.operations import Operation
from cio_relay.outbox.base import DeadReason

__all__ = [
    "AUTH_STATUSES",
    "GiveUp",
    "Pause",
    "Retry",
    "describe_item_error",
    "judge_failure",
    "maybe_processed",
    "refused_whole",
]

AUTH_STATUSES = frozenset({401, 403})
#: 5xx answers that say the request was not processed; any other 5xx may come after it was.
_UNPROCESSED_5XX = frozenset({503})


@dataclass(frozen=True, slots=True)
class Retry:
    """Try the operation again after a backoff of at least ``retry_after`` seconds."""

    retry_after: float | None = None
    #: The answer asked the whole API family to wait (a 429's or 503's ``Retry-After``).
    pause_family: bool = False
    #: Customer.io refused the credentials, not the operation.
    credentials_refused: bool = False


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Dead-letter the operation."""

    reason: DeadReason
    detail: str


@dataclass(frozen=True, slots=True)
class Pause:
    """Keep the operation (no attempt counted) and pause its API family: Customer.io says the
    account lives in another region."""

    detail: str


def judge_failure(op: Operation, exc: ApiError, *, may_resend: bool) -> Retry | GiveUp | Pause:
    """What ``exc`` means for ``op``; ``may_resend``: a second copy is harmless (idempotent) or
    accepted (``retry_ambiguous``)."""
    if isinstance(exc, WrongRegionError):
        return Pause(str(exc))
    if isinstance(exc, RetryableError) and not maybe_processed(op, exc):
        return Retry(exc.retry_after, pause_family=bool(exc.retry_after))
    if isinstance(exc, AmbiguousError | RetryableError):
        if may_resend:
            return Retry(getattr(exc, "retry_after", None))
        return GiveUp(
            DeadReason.AMBIGUOUS,
            f"{exc} — the {op.kind.value} may or may not have been "
            "processed; replay it only if you know it was not",
        )
    if exc.status in AUTH_STATUSES:
        return Retry(credentials_refused=True)
    return GiveUp(DeadReason.PERMANENT, str(exc))


def refused_whole(exc: ApiError) -> bool:
    """Whether a v2 batch answered ``exc`` was refused for something in it (so its halves may
    go through), not for the credentials, the region or a passing failure."""
    return (
        isinstance(exc, PermanentError)
        and exc.status not in AUTH_STATUSES
        and not isinstance(exc, WrongRegionError)
    )


def maybe_processed(op: Operation, exc: ApiError) -> bool:
    """True when a failed non-idempotent request may have been carried out all the same."""
    status = exc.status
    return (
        not op.idempotent
        and status is not None
        and status >= 500
        and status not in _UNPROCESSED_5XX
    )


def describe_item_error(error: Any) -> str:
    """A readable reason for one refused batch item, whatever shape the client gives it."""
    if isinstance(error, Mapping):
        parts = [str(error.get(k)) for k in ("field", "message", "reason") if error.get(k)]
    else:
        parts = [
            str(getattr(error, k))
            for k in ("field", "message", "reason")
            if getattr(error, k, None)
        ]
    return "refused in batch: " + (": ".join(parts) if parts else repr(error))
