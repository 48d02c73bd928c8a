"""The one exception tree of cio-relay.

    CioRelayError
    ├── ConfigError            settings that cannot work (missing key, production creds in staging)
    ├── ValidationError        malformed input (missing identifier ...); also a ValueError
    │   └── LimitExceeded      a documented Customer.io limit broken at enqueue (field, limit, size)
    ├── SignatureError         a webhook that failed verification (one message, no detail leaked)
    ├── OutboxFullError        backpressure: the outbox is past its maximum depth
    └── ApiError               Customer.io answered or failed to (status, body, request_id)
        ├── RetryableError     transient or known unsent: refused, 408, 429, 5xx (retry_after)
        ├── PermanentError     other 4xx: retrying cannot help (parsed meta.error/errors[].detail)
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
    "LimitExceeded",
    "OutboxFullError",
    "PermanentError",
    "RetryableError",
    "SignatureError",
    "ValidationError",
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


class SignatureError(CioRelayError):
    """A webhook signature did not verify. The message is deliberately uninformative."""


class OutboxFullError(CioRelayError):
    """The outbox is past its configured maximum depth; retry after ``retry_after`` seconds."""

    def __init__(self, depth: int, max_depth: int, retry_after: float = 1.0) -> None:
        self.depth = depth
        self.max_depth = max_depth
        self.retry_after = retry_after
        super().__init__(f"outbox depth {depth} is past the maximum of {max_depth}; retry later")


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


class AmbiguousError(ApiError):
    """The request was written but no answer came back: it may or may not have been processed."""
