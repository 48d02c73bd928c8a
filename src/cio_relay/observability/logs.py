"""Structured JSON logs (structlog), one line per event, on stderr.

Both structlog loggers (``get_logger``) and the standard library's (the dispatcher's, uvicorn's)
end in the same JSON formatter, so every line carries the timestamp, level, logger and whatever
is bound in the context: the ``request_id`` of the HTTP request being served (``bind_request_id``)
and the ``op_id`` of the operation a delivery event is about.

Secrets never reach the output: ``SecretScrubber`` masks fields whose names say they hold one
(``authorization``, ``api_key``, ``password`` ...) and any occurrence of the configured secret
values (API keys, Customer.io keys, webhook signing keys) anywhere in a line, including messages
and tracebacks.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any, TextIO

import orjson
import structlog

from cio_relay.delivery.hooks import Hooks
from cio_relay.operations import Operation

__all__ = [
    "REDACTED",
    "SecretScrubber",
    "bind_request_id",
    "configure_logging",
    "get_logger",
    "log_delivery_events",
]

REDACTED = "[redacted]"
_SECRET_FIELD = re.compile(
    r"authorization|api[_-]?key|secret|password|passwd|cookie|signature|signing[_-]?key|session",
    re.IGNORECASE,
)
_MAX_DETAIL = 500
_HANDLER_MARK = "_cio_relay_handler"
_CHATTY_LOGGERS = ("httpx", "httpcore")


class SecretScrubber:
    """A structlog processor that masks secret fields and known secret values."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._values: list[str] = []
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        """Mask these values wherever they appear (short ones would mask ordinary text)."""
        for secret in secrets:
            if secret and len(secret) >= 8 and secret not in self._values:
                self._values.append(secret)

    def scrub_text(self, text: str) -> str:
        for secret in self._values:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in event_dict.items():
            if _SECRET_FIELD.search(key):
                event_dict[key] = REDACTED
            elif isinstance(value, str) and self._values:
                event_dict[key] = self.scrub_text(value)
        return event_dict


def _dumps(value: Any, **_: Any) -> str:
    return orjson.dumps(value, default=repr).decode()


def configure_logging(
    level: str | int = "INFO", *, secrets: Iterable[str] = (), stream: TextIO | None = None
) -> SecretScrubber:
    """Send every log line, structlog's and the standard library's, as JSON to ``stream``.

    Returns the scrubber so that secrets learnt later (a generated API key) can be added.
    Calling it again replaces the handler it installed before.
    """
    scrubber = SecretScrubber(secrets)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            scrubber,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    for chatty in _CHATTY_LOGGERS:  # one line per HTTP call to Customer.io: metrics count those
        logging.getLogger(chatty).setLevel(logging.WARNING)
    return scrubber


def get_logger(name: str = "cio_relay") -> Any:
    return structlog.stdlib.get_logger(name)


@contextlib.contextmanager
def bind_request_id(request_id: str) -> Iterator[None]:
    """Every line logged inside carries ``request_id``."""
    tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)


def log_delivery_events(hooks: Hooks, logger: Any | None = None) -> None:
    """Log retries and dead letters with their op id, kind and reason as fields."""
    log = logger or get_logger("cio_relay.delivery")

    def on_retry(op: Operation, error: str, delay: float) -> None:
        log.info(
            "operation.retry",
            op_id=op.op_id,
            kind=op.kind.value,
            error=error[:_MAX_DETAIL],
            delay=round(delay, 3),
        )

    def on_dead(op: Operation, reason: str, detail: str) -> None:
        log.warning(
            "operation.dead_lettered",
            op_id=op.op_id,
            kind=op.kind.value,
            reason=reason,
            detail=detail[:_MAX_DETAIL],
        )

    hooks.on_retry(on_retry)
    hooks.on_dead(on_dead)
