"""Customer.io API clients: Track (v1 operations, v2 batch) and App (transactional, broadcasts).

``Attachments`` base64-encodes the files of a transactional email under the documented 2 MB.

``TrackClient``/``AsyncTrackClient`` and ``AppClient``/``AsyncAppClient`` are thin sync and async
shells over httpx around one sans-I/O core (``core``: request building and response
classification; ``batch``: the v2 batch body and its per-item answer). Failures raise the error
tree of ``cio_relay.errors``: ``RetryableError`` (known unsent or transient), ``PermanentError``
(retrying cannot help), ``AmbiguousError`` (written, answer lost).
"""

from .app import AppClient, AsyncAppClient
from .attachments import Attachments
from .batch import BatchResult, ItemError, encode_batch, encode_batch_raw, parse_batch_response
from .core import (
    USER_AGENT,
    HttpRequest,
    WriteProgress,
    app_authorization,
    base_url_for,
    classify_response,
    classify_transport_error,
    error_detail,
    parse_retry_after,
    prepare,
    redirect_target,
    track_authorization,
)
from .track import AsyncTrackClient, TrackClient

__all__ = [
    "USER_AGENT",
    "AppClient",
    "AsyncAppClient",
    "AsyncTrackClient",
    "Attachments",
    "BatchResult",
    "HttpRequest",
    "ItemError",
    "TrackClient",
    "WriteProgress",
    "app_authorization",
    "base_url_for",
    "classify_response",
    "classify_transport_error",
    "encode_batch",
    "encode_batch_raw",
    "error_detail",
    "parse_batch_response",
    "parse_retry_after",
    "prepare",
    "redirect_target",
    "track_authorization",
]
