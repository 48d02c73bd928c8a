"""The ``cio-relay`` command: a thin Typer layer that parses and calls library functions.

Each subsystem's commands sit in their own block below; no logic lives here.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="cio-relay",
    help="Self-hosted Customer.io integration: durable outbox, workers, webhooks, data lake.",
    no_args_is_help=True,
    add_completion=False,
)


def main() -> None:
    app()


# --- emulator -------------------------------------------------------------------------------

# --- relay: run, worker, dlq, demo ----------------------------------------------------------

# --- webhooks and lake ----------------------------------------------------------------------
