"""cio-relay: a self-hosted, production-grade Customer.io integration for Python teams."""

from cio_relay.config import Settings
from cio_relay.delivery.hooks import Hooks
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
    StorageUnavailableError,
    ValidationError,
    WrongRegionError,
)
from cio_relay.relay import AsyncRelay, Relay
from cio_relay.sync import AsyncUserRepository, UserRepository

__version__ = "0.1.0"

__all__ = [
    "AmbiguousError",
    "ApiError",
    "AsyncRelay",
    "AsyncUserRepository",
    "CioRelayError",
    "ConfigError",
    "Hooks",
    "LimitExceeded",
    "OutboxFullError",
    "PermanentError",
    "Relay",
    "RetryableError",
    "Settings",
    "SignatureError",
    "StorageUnavailableError",
    "UserRepository",
    "ValidationError",
    "WrongRegionError",
    "__version__",
]
