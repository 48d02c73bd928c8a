"""The webhook endpoint for Django and Flask apps (sync frameworks), without depending on them.

``handle_webhook(intake, body, headers)`` is the whole endpoint as one function: raw body bytes
and the request headers in, ``(status, body)`` out. ``django_view`` and ``flask_view`` wrap it
in each framework's request/response types, importing the framework only when called::

    # Django: urls.py
    from cio_relay.webhooks import SQLiteInbox, WebhookIntake
    from cio_relay.webhooks.adapters import django_view

    intake = WebhookIntake(SQLiteInbox("webhooks.db"), [settings.CIO_WEBHOOK_SIGNING_KEY])
    urlpatterns = [path("webhooks/customerio", django_view(intake))]

    # Flask
    from cio_relay.webhooks.adapters import flask_view

    app.add_url_rule("/webhooks/customerio", view_func=flask_view(intake), methods=["POST"])

Both check the signature headers before reading, then stream the body through the HMAC and keep
its first ``max_body`` bytes: a larger authentic webhook is stored as its event's fields, marked
truncated, never refused for its size (``webhooks/intake.py``). The view is CSRF-exempt in
Django because the signature, not a cookie, authenticates Customer.io. Every answer reaches the
intake's ``on_outcome``, as from the ASGI receiver.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from cio_relay.webhooks.intake import (
    METHOD_NOT_ALLOWED,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    UNAUTHORIZED,
    WebhookIntake,
    header,
)

__all__ = ["django_view", "flask_view", "handle_webhook", "handle_webhook_stream"]

_CONTENT_TYPE = "application/json"


_CHUNK = 65_536


def handle_webhook(
    intake: WebhookIntake, body: bytes, headers: Mapping[str, str]
) -> tuple[int, bytes]:
    """Answer one webhook POST whose whole body is ``body``: ``(status, body)``. Blocks until
    the event is durable. ``headers`` may be any mapping (names matched case-insensitively)."""
    reply = intake.accept(
        body, header(headers, TIMESTAMP_HEADER), header(headers, SIGNATURE_HEADER)
    )
    return reply.status, reply.body


def handle_webhook_stream(
    intake: WebhookIntake, read: Callable[[int], bytes], headers: Mapping[str, str]
) -> tuple[int, bytes]:
    """``handle_webhook`` reading the body from ``read(n)`` (a request stream): headers that
    cannot be authentic are refused before reading; the body goes through the HMAC chunk by
    chunk and only its first ``intake.max_body`` bytes are kept."""
    timestamp = header(headers, TIMESTAMP_HEADER)
    signature = header(headers, SIGNATURE_HEADER)
    if timestamp is None or not intake.headers_acceptable(timestamp, signature):
        return UNAUTHORIZED.status, intake.report(UNAUTHORIZED).body
    digest = intake.start_signature(timestamp)
    kept: list[bytes] = []
    room = intake.max_body
    size = 0
    while chunk := read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
        if room > 0:
            kept.append(chunk[:room])
            room -= len(kept[-1])
    reply = intake.accept(b"".join(kept), timestamp, signature, digest=digest, size=size)
    return reply.status, reply.body


def django_view(intake: WebhookIntake) -> Callable[[Any], Any]:
    """A Django view function (CSRF-exempt) serving the webhook endpoint."""
    http = importlib.import_module("django.http")
    csrf = importlib.import_module("django.views.decorators.csrf")

    def webhook_view(request: Any) -> Any:
        if request.method != "POST":
            return http.HttpResponse(
                intake.report(METHOD_NOT_ALLOWED).body,
                status=405,
                content_type=_CONTENT_TYPE,
                headers={"Allow": "POST"},
            )
        status, payload = handle_webhook_stream(intake, request.read, request.headers)
        return http.HttpResponse(payload, status=status, content_type=_CONTENT_TYPE)

    return csrf.csrf_exempt(webhook_view)  # type: ignore[no-any-return]


def flask_view(intake: WebhookIntake) -> Callable[[], Any]:
    """A Flask view function serving the webhook endpoint (register it for POST)."""
    flask = importlib.import_module("flask")

    def webhook_view() -> Any:
        request = flask.request
        status, payload = handle_webhook_stream(intake, request.stream.read, request.headers)
        return flask.Response(payload, status=status, content_type=_CONTENT_TYPE)

    return webhook_view
