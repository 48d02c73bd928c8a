"""``cio-relay run``: the main job on the embedded defaults.

Starts the workers over the configured outbox (SQLite under ``cio-relay-data/`` by default). With
no Customer.io credentials it starts the bundled emulator in-process, points at it, and says so
loudly: sandbox mode.
"""

from __future__ import annotations

import logging

from rich.console import Console

from cio_relay.config import Settings
from cio_relay.relay import Relay
from cio_relay.sandbox import needs_sandbox, start_sandbox

__all__ = ["run_service"]


def run_service(settings: Settings | None = None) -> None:
    settings = settings or Settings()
    console = Console(stderr=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    sandbox = None
    if needs_sandbox(settings):
        webhook_url = f"http://{settings.host}:{settings.port}/webhooks/customerio"
        sandbox = start_sandbox(settings, webhook_url=webhook_url)
        console.rule("[bold yellow]SANDBOX MODE")
        console.print(f"[bold yellow]{sandbox.banner}")
        console.rule()
        settings = sandbox.settings
    relay = Relay(settings)
    console.print(
        f"cio-relay {settings.env} ({settings.region}): outbox {settings.outbox_url}; "
        "delivering until Ctrl-C."
    )
    try:
        relay.worker().run()
    finally:
        relay.close()
        if sandbox is not None:
            sandbox.stop()
