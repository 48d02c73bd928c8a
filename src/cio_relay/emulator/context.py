"""What request handlers may use of the emulator, as small protocols.

``app.py`` finds a request's handler and calls it with the ``Emulator``; the handlers
(``track_v1``, ``track_v2``, ``app_api``, ``inspection``) type that argument with these
protocols instead, so they depend on what they use and never import ``app.py``, which imports
them. The imports run one way: ``app`` -> ``routes`` -> handlers -> ``context``.
"""

from __future__ import annotations

from typing import Any, Protocol

from .config import EmulatorConfig
from .faults import Faults
from .state import EmulatorState
from .webhooks import WebhookSender

__all__ = ["Account", "SteeredAccount"]


class Account(Protocol):
    """The account a Track or App API handler acts on: its settings, its in-memory world, and
    where a send reports its delivery (the reporting webhooks)."""

    @property
    def config(self) -> EmulatorConfig: ...

    @property
    def state(self) -> EmulatorState: ...

    def report_delivery(self, delivery: dict[str, Any]) -> None: ...


class SteeredAccount(Account, Protocol):
    """What ``/_emulator/`` also reads and steers: the fault rules, the webhook sender, and a
    reset of everything."""

    @property
    def faults(self) -> Faults: ...

    @property
    def webhooks(self) -> WebhookSender: ...

    def reset(self) -> None: ...
