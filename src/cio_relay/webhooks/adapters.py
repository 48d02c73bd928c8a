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

Both read at most ``max_body + 1`` bytes from the request stream, so an oversized body is
refused (413) without being buffered whole; the view is CSRF-exempt in Django because the
signature, not a cookie, authenticates Customer.io. Every answer reaches the intake's
``on_outcome``, as from the ASGI receiver.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from cio_relay.asgi_body import TooLarge
from cio_relay.digits import whole_number
from cio_relay.webhooks.intake import (
    METHOD_NOT_ALLOWED,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookIntake,
    header,
    too_large,
)

__all__ = ["django_view", "flask_view", "handle_webhook"]

_CONTENT_TYPE = "application/json"


def declared_length(headers: Mapping[str, str]) -> int | None:
    return whole_number(header(headers, "content-length"))


def handle_webhook(
    intake: WebhookIntake, body: bytes, headers: Mapping[str, str]
) -> tuple[int, bytes]:
    """Answer one webhook POST: ``(status, body)``. Blocks until the event is durable.

    ``headers`` may be any mapping (names are matched case-insensitively).
    """
    declared = declared_length(headers)
    if declared is not None and declared > intake.max_body:
        reply = intake.report(too_large(TooLarge(intake.max_body, declared)))
    else:
        reply = intake.accept(
            body, header(headers, TIMESTAMP_HEADER), header(headers, SIGNATURE_HEADER)
        )
    return reply.status, reply.body


def _too_large_before_reading(intake: WebhookIntake, headers: Mapping[str, str]) -> bytes | None:
    declared = declared_length(headers)
    if declared is not None and declared > intake.max_body:
        return intake.report(too_large(TooLarge(intake.max_body, declared))).body
    return None


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
        refused = _too_large_before_reading(intake, request.headers)
        if refused is not None:
            return http.HttpResponse(refused, status=413, content_type=_CONTENT_TYPE)
        body = request.read(intake.max_body + 1)
        status, payload = handle_webhook(intake, body, request.headers)
        return http.HttpResponse(payload, status=status, content_type=_CONTENT_TYPE)

    return csrf.csrf_exempt(webhook_view)  # type: ignore[no-any-return]


def flask_view(intake: WebhookIntake) -> Callable[[], Any]:
    """A Flask view function serving the webhook endpoint (register it for POST)."""
    flask = importlib.import_module("flask")

    def webhook_view() -> Any:
        request = flask.request
        refused = _too_large_before_reading(intake, request.headers)
        if refused is not None:
            return flask.Response(refused, status=413, content_type=_CONTENT_TYPE)
        body = request.stream.read(intake.max_body + 1)
        status, payload = handle_webhook(intake, body, request.headers)
        return flask.Response(payload, status=status, content_type=_CONTENT_TYPE)

    return webhook_view
