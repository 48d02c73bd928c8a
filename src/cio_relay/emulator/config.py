"""What an emulator instance is configured with: the account it pretends to be and its knobs.

The emulator is a test tool: it binds 127.0.0.1 by default and its ``/_emulator/`` inspection and
fault API has no authentication. The keys here are the credentials clients must present; they are
secrets like real ones, so they never appear in a repr or a log line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["DEFAULT_APP_API_KEY", "DEFAULT_SITE_ID", "DEFAULT_TRACK_API_KEY", "EmulatorConfig"]

DEFAULT_SITE_ID = "emulator-site"
DEFAULT_TRACK_API_KEY = "emulator-track-key"
DEFAULT_APP_API_KEY = "emulator-app-key"

RegionName = Literal["us", "eu"]


@dataclass(frozen=True)
class EmulatorConfig:
    """One emulated Customer.io account.

    ``region`` is where the account lives; requests that name the other region's host are
    answered as Customer.io answers them (customerio-api.md §1). ``eu_track_url`` is the base of
    the ``Location`` an EU account's Track call to the US host is redirected to: the real EU host
    by default; tests may point it back at the emulator to follow the redirect end to end.

    ``max_stored_events`` and ``dedupe_window`` bound memory under benchmarks that send millions
    of events: counters stay exact, only the oldest stored events / remembered ids are dropped.
    Customer.io's own de-duplication window is not documented (UNCONFIRMED).
    """

    site_id: str = DEFAULT_SITE_ID
    track_api_key: str = field(default=DEFAULT_TRACK_API_KEY, repr=False)
    app_api_key: str = field(default=DEFAULT_APP_API_KEY, repr=False)
    region: RegionName = "us"
    environment_id: int = 1  # the workspace number GET /api/v1/accounts/region answers
    webhook_url: str | None = None
    webhook_signing_key: str | None = field(default=None, repr=False)
    eu_track_url: str = "https://track-eu.customer.io"
    max_stored_events: int = 1_000_000
    dedupe_window: int = 2_000_000
    max_body_bytes: int = 20_000_000
    webhook_attempts: int = 4
    webhook_backoff: float = 0.05
    webhook_timeout: float = 4.0  # Customer.io's own webhook timeout (customerio-api.md §6)

    def __post_init__(self) -> None:
        if self.region not in ("us", "eu"):
            raise ValueError(f"region must be 'us' or 'eu', not {self.region!r}")
        if bool(self.webhook_url) and not self.webhook_signing_key:
            raise ValueError("webhook_url needs webhook_signing_key (webhooks are always signed)")
