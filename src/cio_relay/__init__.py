"""cio-relay: a self-hosted, production-grade Customer.io integration for Python teams."""

from cio_relay.config import Settings
from cio_relay.errors import (
    AmbiguousError,
    ApiError,
    CioRelayError,
    ConfigError,
    LimitExceeded,
    OutboxFullError,
    PermanentError,
    RetryableError,
    SignatureError,
    ValidationError,
)

__version__ = "0.1.0"

__all__ = [
    "AmbiguousError",
    "ApiError",
    "CioRelayError",
    "ConfigError",
    "LimitExceeded",
    "OutboxFullError",
    "PermanentError",
    "RetryableError",
    "Settings",
    "SignatureError",
    "ValidationError",
    "__version__",
]
