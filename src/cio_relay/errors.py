"""The one exception tree of cio-relay.

    CioRelayError
    ├── ConfigError            settings that cannot work (missing key, production creds in staging)
    ├── ValidationError        malformed input (missing identifier ...); also a ValueError
    │   ├── LimitExceeded      a documented Customer.io limit broken at enqueue (field, limit, size)
    │   └── EventParseError    an authentic webhook payload that is not a usable event
    ├── SignatureError         a webhook that failed verification (one message, no detail leaked)
    ├── OutboxFullError        backpressure: the outbox is past its maximum depth
    ├── StorageUnavailableError  the outbox (or a store beside it) failed: nothing was stored
    ├── ReplicationError       fewer Redis replicas than asked confirmed an enqueue in time
    ├── InboxUnavailableError  the webhook inbox could not store an event now (answer 503)
    └── ApiError               Customer.io answered or failed to (status, body, request_id)
        ├── RetryableError     transient or known unsent: refused, 408, 429, 5xx (retry_after)
        ├── PermanentError     other 4xx: retrying cannot help (parsed meta.error/errors[].detail)
        │   └── WrongRegionError  the account lives in the other region (301 "wrong datacenter",
        │                         a redirect to the other region's host): the setting is wrong,
        │                         not the request; delivery pauses instead of dead-lettering
        └── AmbiguousError     written, then a timeout or lost connection: it may have been
                               processed; never retried blindly for non-idempotent sends

Messages never carry secrets: API keys, basic-auth credentials and signing keys are not part of
any field here, and response bodies are truncated.
"""

from __future__ import annotations

__all__ = [
    "AmbiguousError",
    "ApiError",
    "CioRelayError",
    "ConfigError",
    "EventParseError",
    "InboxUnavailableError",
    "LimitExceeded",
    "OutboxFullError",
    "PermanentError",
    "ReplicationError",
    "RetryableError",
    "SignatureError",
    "StorageUnavailableError",
    "ValidationError",
    "WrongRegionError",
]

_MAX_BODY_IN_MESSAGE = 500


class CioRelayError(Exception):
    """Base class of every error cio-relay raises on purpose."""


class ConfigError(CioRelayError):
    """The settings cannot work as given."""


class ValidationError(CioRelayError, ValueError):
    """Input that is malformed (as opposed to too large): names the field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class LimitExceeded(ValidationError):
    """A documented Customer.io limit was violated.

    ``field`` names where (``attributes.plan``, ``name``, ``to``), ``limit`` the documented maximum
    and ``size`` what was given, both in ``unit`` (bytes, attributes, recipients ...).
    """

    def __init__(self, field: str, limit: int, size: int, unit: str = "bytes") -> None:
        self.limit = limit
        self.size = size
        self.unit = unit
        super().__init__(field, f"{size} {unit} exceeds the limit of {limit} {unit}")


class EventParseError(ValidationError):
    """An authentic payload that is not a usable event: quarantined, never retried by us."""


class SignatureError(CioRelayError):
    """A webhook signature did not verify. The message is deliberately uninformative."""


class OutboxFullError(CioRelayError):
    """The outbox is past its configured maximum depth; retry after ``retry_after`` seconds."""

    def __init__(self, depth: int, max_depth: int, retry_after: float = 1.0) -> None:
        self.depth = depth
        self.max_depth = max_depth
        self.retry_after = retry_after
        super().__init__(f"outbox depth {depth} is past the maximum of {max_depth}; retry later")


class StorageUnavailableError(CioRelayError):
    """The outbox, or the idempotency store beside it, could not take a write (a full disk,
    Redis restarting): nothing of the call was stored, so calling again is safe; retry after
    ``retry_after`` seconds. The storage's own exception is the ``__cause__``; the message names
    only its class (the text may name hosts or paths), or SQLite's fixed reason."""

    def __init__(self, store: str, cause: BaseException, retry_after: float = 1.0) -> None:
        self.store = store
        self.retry_after = retry_after
        self.reason = _storage_reason(cause)
        super().__init__(f"the {store} is unavailable ({self.reason}); nothing was stored")


class ReplicationError(CioRelayError):
    """Fewer replicas than ``wait_replicas`` confirmed an enqueue in time; enqueue again (op ids
    make that safe)."""


class InboxUnavailableError(CioRelayError):
    """The inbox could not store the event now (locked, disk full, closed): answer 503."""


def _storage_reason(cause: BaseException) -> str:
    import sqlite3  # SQLite's messages are fixed texts ("database or disk is full")

    name = type(cause).__name__
    if isinstance(cause, sqlite3.Error) and str(cause):
        return f"{name}: {str(cause)[:100]}"
    return name


class ApiError(CioRelayError):
    """Customer.io answered with an error, or could not be reached."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: str = "",
        request_id: str | None = None,
        endpoint: str = "",
    ) -> None:
        self.status = status
        self.body = body[:_MAX_BODY_IN_MESSAGE]
        self.request_id = request_id
        self.endpoint = endpoint
        super().__init__(message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r}, status={self.status!r})"


class RetryableError(ApiError):
    """Transient, and known or safe to send again: 408, 429, 5xx, connect refused."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class PermanentError(ApiError):
    """A 4xx other than 408/429: the request is wrong and sending it again cannot help."""


class WrongRegionError(PermanentError):
    """Customer.io answered that the account lives in the other region: a 301 "wrong
    datacenter" from the App API, or a redirect (not followed) to the other region's host.

    Permanent for whoever called (sending it again unchanged cannot help: ``CUSTOMERIO_REGION``
    must change), but nothing is wrong with the request and it was not processed, so the
    delivery worker keeps the operation and pauses its API family instead of dead-lettering it.
    ``region`` is the region the client was configured with, when known.
    """

    def __init__(self, message: str, *, region: str | None = None, **kwargs: object) -> None:
        self.region = region
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class AmbiguousError(ApiError):
    """The request was written but no answer came back: it may or may not have been processed."""
