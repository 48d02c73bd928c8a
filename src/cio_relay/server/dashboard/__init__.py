"""The operator dashboard: server-rendered Jinja2 pages with inline SVG charts."""

from cio_relay.server.dashboard.sources import FunnelRow, FunnelSource, RecentWebhooks, WebhookRow
from cio_relay.server.dashboard.views import PAGE_SIZE, Dashboard

__all__ = ["PAGE_SIZE", "Dashboard", "FunnelRow", "FunnelSource", "RecentWebhooks", "WebhookRow"]
