"""The sans-I/O core of the Customer.io clients: build requests, classify what comes back.

Nothing here touches a socket or a clock it is not given (``parse_retry_after`` reads the clock
only when ``now`` is left out). The sync and async shells (``track.py``, ``app.py`` over
``_shell.py``) do the I/O and call these functions on each side of it, so both behave the same
and every decision below is tested without a network.

How outcomes map onto the error tree (``cio_relay.errors``, design.md contracts 2 and 4):

- 2xx: success.
- 408, 429, 5xx: ``RetryableError``; a ``Retry-After`` (seconds or an HTTP date) becomes
  ``retry_after`` in seconds from now.
- other 4xx: ``PermanentError`` carrying the parsed ``meta.error`` / ``meta.errors[]`` /
  ``errors[].detail``.
- 3xx: ``PermanentError`` naming the Location's host (redirects are not followed blindly: a POST
  replayed as a GET, as ``requests`` does, silently loses the request; customerio-api.md §7).
  A 301 "wrong datacenter" from the App API, or a redirect to the other region's host, is a
  ``WrongRegionError`` (a ``PermanentError`` that says to set ``CUSTOMERIO_REGION``; the
  dispatcher pauses its API family on it instead of dead-lettering). The one redirect followed
  is ``redirect_target``'s: see there.
- transport failures: ``RetryableError`` when the request cannot have reached Customer.io whole
  (connect refused/reset/timeout, pool timeout, a failure while writing); ``AmbiguousError`` when
  it was written and the answer was lost (read timeout, connection closed or reset afterwards).

Errors carry the endpoint (method and path: never the URL's credentials, which are in a header
anyway), the status, the response's ``X-Request-Id`` and a truncated body; known secrets are
scrubbed from anything taken from the response.
"""

from __future__ import annotations

import base64
import email.utils
import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from importlib import metadata
from typing import Any, Literal
from urllib.parse import unquote, urljoin, urlsplit

import httpx
import orjson

from cio_relay.config import REGION_URLS
from cio_relay.errors import (
    AmbiguousError,
    ApiError,
    ConfigError,
    PermanentError,
    RetryableError,
    ValidationError,
    WrongRegionError,
)
from cio_relay.operations import Request

__all__ = [
    "USER_AGENT",
    "ApiName",
    "HttpRequest",
    "WriteProgress",
    "app_authorization",
    "base_url_for",
    "classify_response",
    "classify_transport_error",
    "error_detail",
    "parse_json",
    "parse_retry_after",
    "prepare",
    "redact",
    "redirect_target",
    "request_id_of",
    "track_authorization",
]

ApiName = Literal["track", "app"]


def _version() -> str:
    try:
        return metadata.version("cio-relay")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0"


USER_AGENT = f"cio-relay/{_version()}"

#: How much of a response body goes into an error message (the full body, truncated by
#: ``ApiError`` itself, stays on ``exc.body``).
DETAIL_CHARS = 300
_RETRYABLE_STATUSES = frozenset({408, 429})
_REDIRECT_KEEPING_METHOD = frozenset({307, 308})
_REDACTED = "[redacted]"


# --- building -----------------------------------------------------------------------------------


def base_url_for(api: ApiName, region: str = "us", override: str | None = None) -> str:
    """The base URL of ``api`` ("track" or "app"): ``override`` if given, else the region's.

    Raises ``ConfigError`` for an unknown region or an override that is not a plain http(s) URL
    (credentials in the URL are refused: they would bypass our auth header and leak into logs).
    """
    if region not in REGION_URLS:
        raise ConfigError(
            f"CUSTOMERIO_REGION must be one of {', '.join(sorted(REGION_URLS))}, not {region!r}"
        )
    return _checked_base_url(override) if override else REGION_URLS[region][api]


def _checked_base_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("a Customer.io base URL must look like https://host[:port][/prefix]")
    if parts.username is not None or parts.password is not None:
        # Never echo the URL here: it holds the credentials we refuse.
        raise ConfigError("a Customer.io base URL must not contain credentials; pass the keys")
    if parts.query or parts.fragment:
        raise ConfigError("a Customer.io base URL must not have a query or fragment")
    return f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")


def track_authorization(site_id: str, api_key: str) -> str:
    """``Authorization`` for the Track API: HTTP Basic, site id as user, Track key as password."""
    token = base64.b64encode(f"{site_id}:{api_key}".encode()).decode("ascii")
    return f"Basic {token}"


def app_authorization(api_key: str) -> str:
    """``Authorization`` for the App API: a bearer App API key."""
    return f"Bearer {api_key}"


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A request ready for the wire. ``endpoint`` is what errors and logs may show."""

    method: str
    url: str
    headers: dict[str, str] = field(repr=False)
    content: bytes | None = field(default=None, repr=False)
    endpoint: str = ""

    def redirected(self, url: str) -> HttpRequest:
        """The same request (method, headers, body) sent to ``url``."""
        return HttpRequest(self.method, url, self.headers, self.content, self.endpoint)


def prepare(
    request: Request | None = None,
    *,
    base_url: str,
    authorization: str,
    method: str | None = None,
    path: str | None = None,
    body: Any = None,
    content: bytes | None = None,
) -> HttpRequest:
    """Build the wire request from an ``operations.Request`` or from explicit pieces.

    ``content`` is an already-serialised JSON body (the batch fast path); otherwise ``body`` (or
    ``request.body``) is serialised with orjson.
    """
    if request is not None:
        method, path, body = request.method, request.path, request.body
    if not method or not path or not path.startswith("/"):
        raise ValidationError("path", f"a request needs a method and an absolute path: {path!r}")
    if _has_dot_segment(path):
        raise ValidationError(
            "path",
            f"{path[:80]!r} has a '.' or '..' segment, which URL normalisation removes (the "
            "request would reach another endpoint); ids and tokens cannot be '.' or '..'",
        )
    if content is None and body is not None:
        try:
            content = orjson.dumps(body)
        except TypeError as exc:
            raise ValidationError("body", f"is not JSON-serialisable: {exc}") from None
    headers = {
        "Authorization": authorization,
        "User-Agent": USER_AGENT,
        "Accept": "application/json",
    }
    if content is not None:
        headers["Content-Type"] = "application/json"
    return HttpRequest(method, f"{base_url}{path}", headers, content, f"{method} {path}")


_DOT_SEGMENTS = frozenset({".", ".."})


def _has_dot_segment(path: str) -> bool:
    """Whether a segment of ``path`` is "." or "..", also written as ``%2E`` (RFC 3986 2.3)."""
    if "." not in path and "%2" not in path.upper():
        return False
    return any(unquote(segment) in _DOT_SEGMENTS for segment in path.split("?", 1)[0].split("/"))


# --- responses ----------------------------------------------------------------------------------


def request_id_of(headers: Mapping[str, str]) -> str | None:
    """The response's ``X-Request-Id``, whatever the header's case."""
    return _header(headers, "x-request-id")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    if isinstance(headers, httpx.Headers):
        value: str | None = headers.get(name)
        return value
    return next((v for k, v in headers.items() if k.lower() == name), None)


#: delay-seconds (RFC 9110 10.2.3), leniently: a sign and a fraction are read as well.
_DELAY_SECONDS = re.compile(r"[-+]?[0-9]+(?:\.[0-9]+)?")


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from ``now``: delay-seconds or an HTTP date; None if absent
    or unreadable. A date in the past gives 0."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value) is None:
        # float() would also read "١٢", "1_0" and "inf": only ASCII digits are seconds here.
        return _seconds_until_http_date(value, time.time() if now is None else now)
    seconds = float(value)
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _seconds_until_http_date(value: str, now: float) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT by definition
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def parse_json(body: bytes) -> Any:
    """The JSON in ``body``, or None when it is empty or not JSON."""
    if not body or not body.strip():
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def error_detail(body: bytes) -> str:
    """The human part of an error body: ``meta.error``, ``meta.errors[]``, ``errors[].detail``
    (or ``message``/``reason``), else the body text; truncated."""
    doc = parse_json(body)
    parts: list[str] = []
    if isinstance(doc, dict):
        meta = doc.get("meta")
        if isinstance(meta, dict):
            if isinstance(meta.get("error"), str):
                parts.append(meta["error"])
            parts.extend(_error_texts(meta.get("errors")))
        parts.extend(_error_texts(doc.get("errors")))
        if not parts and isinstance(doc.get("message"), str):
            parts.append(doc["message"])
    text = "; ".join(parts) if parts else body.decode("utf-8", "replace").strip()
    return _truncate(text, DETAIL_CHARS)


def _error_texts(errors: Any) -> Iterable[str]:
    if not isinstance(errors, list):
        return
    for error in errors:
        if isinstance(error, str):
            yield error
        elif isinstance(error, dict):
            text = error.get("detail") or error.get("message") or error.get("reason")
            if text:
                where = error.get("field") or error.get("source", {}).get("pointer", "")
                yield f"{where}: {text}" if where and isinstance(where, str) else str(text)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} chars)"


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every known secret replaced (a response could echo a header back)."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, _REDACTED)
    return text


def classify_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    endpoint: str,
    region: str | None = None,
    secrets: Iterable[str] = (),
    now: float | None = None,
) -> None:
    """Return for a 2xx; otherwise raise the matching ``ApiError`` subclass (see the module doc).

    ``region`` (the client's) makes the wrong-datacenter advice concrete; ``secrets`` are scrubbed
    from anything quoted from the response.
    """
    if 200 <= status < 300:
        return
    secrets = tuple(secrets)
    text = redact(body.decode("utf-8", "replace"), secrets)
    context: dict[str, Any] = {
        "status": status,
        "body": text,
        "request_id": request_id_of(headers),
        "endpoint": endpoint,
    }
    suffix = f" (request id {context['request_id']})" if context["request_id"] else ""
    if 300 <= status < 400:
        message = _redirect_message(status, headers, body, endpoint, region) + suffix
        if _names_other_region(headers, body, region):
            raise WrongRegionError(message, region=region, **context)
        raise PermanentError(message, **context)
    detail = redact(error_detail(body), secrets)
    message = f"{endpoint} answered {status}: {detail or httpx.codes.get_reason_phrase(status)}"
    if status in _RETRYABLE_STATUSES or 500 <= status < 600:
        # Whether Customer.io sends Retry-After is UNCONFIRMED (customerio-api.md §4): honour it
        # when present, as the Node client does; the retry policy caps it. A 5xx is taken as not
        # processed, as every official client does; whether a gateway 504 can follow a processed
        # send is undocumented, and the dispatcher's max-attempts cap bounds the cost.
        retry_after = parse_retry_after(_header(headers, "retry-after"), now=now)
        raise RetryableError(message + suffix, retry_after=retry_after, **context)
    raise PermanentError(message + suffix, **context)


def _names_other_region(headers: Mapping[str, str], body: bytes, region: str | None) -> bool:
    """Whether a 3xx says the account lives in the other region: the App API's documented
    "wrong datacenter" body, or a Location on a host of a region other than ``region``."""
    if b"wrong datacenter" in body.lower():
        return True
    host = (urlsplit(_header(headers, "location") or "").hostname or "").lower()
    return any(
        host == urlsplit(url).hostname
        for name, urls in REGION_URLS.items()
        if name != region and region is not None
        for url in urls.values()
    )


def _redirect_message(
    status: int, headers: Mapping[str, str], body: bytes, endpoint: str, region: str | None
) -> str:
    location = _header(headers, "location") or ""
    host = urlsplit(location).hostname or "no Location"
    if "wrong datacenter" in body.decode("utf-8", "replace").lower():
        other = {"us": "eu", "eu": "us"}.get(region or "", "")
        hint = f" (this client uses {region!r}; try {other!r})" if other else ""
        return (
            f"{endpoint} answered {status} wrong datacenter: the account lives in another "
            f"region; set CUSTOMERIO_REGION to the account's region{hint}"
        )
    return (
        f"{endpoint} answered {status}, a redirect to {host}, which is not followed (a redirected "
        "POST can lose its body); if the account is in another region set CUSTOMERIO_REGION, "
        "else point the base URL at the right host"
    )


def redirect_target(
    status: int,
    headers: Mapping[str, str],
    *,
    api: ApiName,
    request_url: str,
    base_url: str,
) -> str | None:
    """The URL to re-send to, for the one redirect we follow; None otherwise.

    Only a 307/308 from the Track API, and only to an https ``*.customer.io`` host or the
    configured base host. Why: Customer.io redirects an EU account's Track calls made to the US
    host (customerio-api.md §1), and 307/308 promise that the same method and body are expected
    at the new place (RFC 9110 §15.4.8-9), so re-sending loses nothing; Track calls are idempotent
    (PUT identify, events de-duplicated by id), so the extra hop cannot double-apply. The host
    check keeps the Basic credentials inside Customer.io (or the emulator we were pointed at).
    The App API is never followed: its sends are not idempotent and its region mismatch answers
    301 "wrong datacenter" anyway. Callers follow at most once.
    """
    if api != "track" or status not in _REDIRECT_KEEPING_METHOD:
        return None
    location = _header(headers, "location")
    if not location:
        return None
    target = urljoin(request_url, location)
    parts, base = urlsplit(target), urlsplit(base_url)
    host = (parts.hostname or "").lower()
    on_customer_io = parts.scheme == "https" and (
        host == "customer.io" or host.endswith(".customer.io")
    )
    on_base_host = parts.scheme == base.scheme and parts.netloc.lower() == base.netloc.lower()
    if parts.username is not None or not (on_customer_io or on_base_host):
        return None
    return target


# --- transport failures -------------------------------------------------------------------------


class WriteProgress:
    """Follows one request through httpcore's ``trace`` extension to learn whether it was written.

    ``written`` is None when no trace arrived (a custom or mock transport): then the exception's
    type alone decides. Once the body has been handed to the socket whole the request may have
    been processed, so a later failure is ambiguous; before that, Customer.io cannot have seen a
    complete request (Content-Length framing), so sending again is safe.
    """

    __slots__ = ("traced", "written")

    def __init__(self) -> None:
        self.traced = False
        self.written = False

    def record(self, name: str, info: Mapping[str, Any]) -> None:
        self.traced = True
        if name.endswith("send_request_body.complete"):
            self.written = True

    async def arecord(self, name: str, info: Mapping[str, Any]) -> None:
        self.record(name, info)

    @property
    def state(self) -> bool | None:
        return self.written if self.traced else None


#: Failures that happen before a request can have been sent whole.
_NEVER_SENT: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.WriteError,
    httpx.WriteTimeout,
    httpx.ProxyError,
)
#: Failures of our own making: sending again cannot help.
_OUR_FAULT: tuple[type[Exception], ...] = (httpx.UnsupportedProtocol, httpx.LocalProtocolError)


def classify_transport_error(
    exc: httpx.TransportError,
    *,
    endpoint: str,
    written: bool | None = None,
    secrets: Iterable[str] = (),
) -> ApiError:
    """The ``ApiError`` for a request that got no answer (returned, for the caller to raise).

    ``written`` is ``WriteProgress.state``: True/False when known, None to decide by type.
    """
    reason = redact(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, secrets)
    if isinstance(exc, _OUR_FAULT):
        return PermanentError(f"{endpoint} could not be sent ({reason})", endpoint=endpoint)
    if isinstance(exc, _NEVER_SENT) or written is False:
        return RetryableError(
            f"{endpoint} was not delivered ({reason}); it is safe to send again",
            endpoint=endpoint,
        )
    return AmbiguousError(
        f"{endpoint} was sent but no answer came back ({reason}); "
        "Customer.io may or may not have processed it",
        endpoint=endpoint,
    )
