"""What the dashboard reads besides the outbox: recent webhooks, the delivery funnel and
where the BigQuery loader keeps its state.

Small protocols so that the views do not depend on how the webhook inbox or the lake store
things; ``server/app.py`` adapts the real ones. Both are optional: without them the dashboard
says the feature is not configured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cio_relay.config import Settings
from cio_relay.errors import ConfigError
from cio_relay.lake.bigquery import lake_state_path

__all__ = ["FunnelRow", "FunnelSource", "RecentWebhooks", "WebhookRow", "bigquery_state"]


@dataclass(frozen=True, slots=True)
class WebhookRow:
    received_at: float
    event_id: str
    metric: str  # e.g. email_delivered
    recipient: str
    state: str  # pending, done, parked, quarantined


class RecentWebhooks(Protocol):
    def recent(self, limit: int, offset: int = 0) -> Sequence[WebhookRow]:
        """Newest first."""

    def total(self) -> int:
        """How many are kept (for pagination)."""

    def counts(self) -> Mapping[str, int] | None:
        """What the inbox holds by state (pending, done, parked, quarantined), if known."""


@dataclass(frozen=True, slots=True)
class FunnelRow:
    campaign: str  # a campaign, broadcast or transactional message id, as a label
    steps: tuple[tuple[str, int], ...]  # ("sent", 1200), ("delivered", 1150) ...


class FunnelSource(Protocol):
    def funnel(self, days: int, limit: int) -> Sequence[FunnelRow]:
        """Per campaign over the last ``days`` days, the busiest ``limit`` campaigns."""


def bigquery_state(settings: Settings) -> tuple[Path, str] | None:
    """(load state file, table) when a BigQuery table is configured for a Parquet lake."""
    if not settings.bigquery_table:
        return None
    try:
        return lake_state_path(settings.lake_url), settings.bigquery_table
    except ConfigError:
        return None  # no directory lake, no loader: ``cio-relay run`` says why at start
