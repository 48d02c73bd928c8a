"""Sandbox mode: with no Customer.io credentials, run against the bundled emulator.

``cio-relay run`` and ``cio-relay demo`` call ``start_sandbox`` so that a new user sees the whole
pipeline work (deliveries, webhooks, dead letters) without an account. The emulator runs in a
background thread of this process, bound to 127.0.0.1, and the returned Settings point at it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from cio_relay.config import Settings

__all__ = ["Sandbox", "needs_sandbox", "start_sandbox"]

SANDBOX_BANNER = (
    "SANDBOX MODE: no Customer.io credentials are configured (CUSTOMERIO_SITE_ID, "
    "CUSTOMERIO_TRACK_API_KEY, CUSTOMERIO_APP_API_KEY). Everything is delivered to the bundled "
    "emulator at {url}; nothing reaches Customer.io."
)


def needs_sandbox(settings: Settings) -> bool:
    return not settings.has_track_credentials and settings.app_api_key is None


@dataclass
class Sandbox:
    """A running in-process emulator and the settings that point at it."""

    server: Any  # cio_relay.emulator.EmulatorServer
    settings: Settings

    @property
    def url(self) -> str:
        return str(self.server.url)

    @property
    def banner(self) -> str:
        return SANDBOX_BANNER.format(url=self.url)

    def stop(self) -> None:
        self.server.stop()


def start_sandbox(settings: Settings, *, webhook_url: str | None = None) -> Sandbox:
    """Start the emulator with fresh random keys and return settings aimed at it.

    With ``webhook_url`` the emulator posts its reporting webhooks there, signed with a fresh
    key that the returned settings carry in ``webhook_signing_keys``.
    """
    from cio_relay.emulator import EmulatorConfig, EmulatorServer

    signing_key = secrets.token_hex(16)
    config = EmulatorConfig(
        site_id="sandbox-site",
        track_api_key=secrets.token_hex(16),
        app_api_key=secrets.token_hex(16),
        region=settings.region,
        webhook_url=webhook_url,
        webhook_signing_key=signing_key,
    )
    server = EmulatorServer(config)
    server.start()
    sandboxed = settings.model_copy(
        update={
            "site_id": config.site_id,
            "track_api_key": _secret(config.track_api_key),
            "app_api_key": _secret(config.app_api_key),
            "track_url": server.url,
            "app_url": server.url,
            "webhook_signing_keys": [_secret(signing_key)],
        }
    )
    return Sandbox(server, sandboxed)


def _secret(value: str) -> Any:
    from pydantic import SecretStr

    return SecretStr(value)
