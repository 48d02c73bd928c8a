"""The scheduled bulk syncs of ``cio-relay run``: the syncs file's syncs that have ``every``.

``start_sync_scheduler`` reads ``CIO_RELAY_SYNCS`` (sync/syncs_file.py), opens the user
repository beside the service's outbox, registers the sync series in the service's metrics
(observability/sync_metrics.py) and starts ``SyncScheduler`` (sync/schedule.py) on its
thread; the runner stops it at shutdown, before the outbox closes. A file that cannot be read,
or scheduled syncs over an outbox that cannot hold their state (Redis), stop the start with a
``ConfigError``, as every setting that cannot work does; a sync that fails later (its source
down) only fails that run, which is retried at its next interval.
"""

from __future__ import annotations

import logging

from cio_relay.config import Settings
from cio_relay.observability.metrics import Metrics
from cio_relay.observability.sync_metrics import SyncMetrics
from cio_relay.relay import Relay
from cio_relay.sync import UserRepository
from cio_relay.sync.schedule import SyncScheduler
from cio_relay.sync.syncs_file import load_syncs

__all__ = ["start_sync_scheduler"]

log = logging.getLogger("cio_relay.server")

#: Stored runs read per sync at start, for its last completion.
_RUNS_READ = 50


def start_sync_scheduler(
    settings: Settings, relay: Relay, metrics: Metrics, *, start: bool = True
) -> SyncScheduler | None:
    """The scheduler of the syncs file's periodic syncs, started unless ``start`` is False
    (tests drive it with ``tick()``); None when there is no file or no sync in it has
    ``every``."""
    if settings.syncs is None:
        return None
    specs = [spec for spec in load_syncs(settings.syncs).values() if spec.every is not None]
    if not specs:
        return None
    users = UserRepository(relay)
    counted = SyncMetrics(metrics.registry)
    names = [spec.name for spec in specs]
    counted.watch(names, [run for name in names for run in users.store.runs(name, _RUNS_READ)])
    scheduler = SyncScheduler(users, specs, on_attempt=counted.on_attempt)
    if start:
        scheduler.start()
    log.info(
        "bulk syncs scheduled: %s",
        ", ".join(f"{spec.name} every {spec.every:g} s" for spec in specs),
    )
    return scheduler
