"""The account's region: checked when a worker starts, and a pause when Customer.io says that
the account lives in the other one.

A wrong ``CUSTOMERIO_REGION`` is a setting, not a fault of any operation, so it must neither
dead-letter work nor spin on it:

- **At start-up** (``confirm_region``) a worker asks ``GET /api/v1/accounts/region`` with the
  Track credentials, which answers for either regional host (track-api.json, ``getRegion``:
  ``{"url": ..., "region": "us" | "eu", "environment_id": ...}``; customerio-api.md lists the
  keys as UNCONFIRMED, the published document settles them; only ``region`` is read, and an
  answer without it is taken as "cannot tell"). A different region refuses to start with one
  line (``ConfigError``); so does a 401/403 (wrong keys, or a US account asked on the EU host).
  While Customer.io cannot be reached (or answers 5xx/429) the check is tried again with growing
  waits, logged, and delivery starts once it is answered. Without Track credentials there is
  nothing to ask it with, and an answer that names no region cannot be judged: both start, and
  the run-time pause below still guards.
- **At run time** a ``WrongRegionError`` (the App API's 301 "wrong datacenter", a Track
  redirect to the other region's host: both say the request was not processed) pauses that API
  family (``track`` or ``app``) in the ``RegionGate``: its operations stay in the outbox (given
  back with a delay, or rescheduled when a sending mark has to go), readiness says
  ``paused: wrong region (...)``, ``cio_relay_region_mismatch{api}`` is 1 and an error is logged.
  Every ``PROBE_FIRST`` seconds, growing to ``PROBE_MOST``, one request of the family is let
  through as a probe; the first one delivered resumes the family by itself (a proxy behind
  ``CUSTOMERIO_APP_URL`` fixed, say). A wrong ``CUSTOMERIO_REGION`` itself is fixed by
  correcting it and restarting, when the start-up check confirms it. While every family the
  worker sends to is paused it leases nothing until the next probe is due, so a pause never
  spins over the backlog; the retry policy's age cap still applies to paused work.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from cio_relay.backoff import growing_delays
from cio_relay.customerio.core import ApiName
from cio_relay.delivery.hooks import Hooks
from cio_relay.delivery.outcomes import AUTH_STATUSES
from cio_relay.errors import ApiError, ConfigError, PermanentError, WrongRegionError
from cio_relay.operations import Api

__all__ = [
    "FAMILIES",
    "PROBE_FIRST",
    "PROBE_MOST",
    "RegionGate",
    "RegionSource",
    "account_region",
    "confirm_region",
    "family_of",
]

log = logging.getLogger("cio_relay.delivery")

#: Waits between tries of a start-up check that got no answer, like the outbox's at start.
CHECK_FIRST, CHECK_MOST = 1.0, 30.0
#: Waits between probes of a paused family: one request each, which Customer.io refuses
#: unprocessed for as long as the region is wrong.
PROBE_FIRST, PROBE_MOST = 30.0, 600.0
#: Seconds between "still paused" log lines.
LOG_EVERY = 300.0
_REGIONS = ("us", "eu")
FAMILIES: tuple[ApiName, ...] = ("track", "app")


def family_of(api: Api) -> ApiName:
    """The client (and Customer.io host) an operation family goes through."""
    return "track" if api is Api.TRACK else "app"


@runtime_checkable
class RegionSource(Protocol):
    """A Track client that can ask ``GET /api/v1/accounts/region`` (``AsyncTrackClient``)."""

    async def region(self) -> Any: ...


def account_region(answer: Any) -> str | None:
    """The region an ``accounts/region`` answer names (``"us"``/``"eu"``), else None."""
    region = answer.get("region") if isinstance(answer, dict) else None
    if isinstance(region, str) and region.strip().lower() in _REGIONS:
        return region.strip().lower()
    return None


async def confirm_region(
    source: RegionSource,
    configured: str,
    gate: RegionGate,
    *,
    stop: asyncio.Event | None = None,
    delays: Iterator[float] | None = None,
) -> bool:
    """Ask the account's region and compare it with ``configured`` (``CUSTOMERIO_REGION``).

    Returns True when delivery may start, False when ``stop`` was set while waiting for an
    answer. Raises ``ConfigError`` (one line) when the account lives in another region or the
    credentials are refused; the gate then shows every family paused.
    """
    delays = delays or growing_delays(CHECK_FIRST, CHECK_MOST)
    gate.checking = True
    try:
        while True:
            try:
                answer = await source.region()
            except WrongRegionError as exc:  # redirected to the other region's host
                raise gate.refuse(f"{exc}") from None
            except PermanentError as exc:
                if exc.status in AUTH_STATUSES:
                    raise _credentials_refused(exc, configured) from None
                log.warning("the account region could not be checked (%s); delivering", exc)
                return True
            except ApiError as exc:
                delay = next(delays)
                log.error(
                    "the account region could not be checked (%s); trying again in %.1f s, "
                    "delivery starts once it is answered",
                    exc,
                    delay,
                )
                if await _stopped_within(stop, delay):
                    return False
                continue
            return gate.judge(account_region(answer), configured)
    finally:
        gate.checking = False


def _credentials_refused(exc: ApiError, configured: str) -> ConfigError:
    return ConfigError(
        f"Customer.io refused the Track credentials ({exc.status}) when asked for the account "
        "region: check CUSTOMERIO_SITE_ID and CUSTOMERIO_TRACK_API_KEY (a US account asked on "
        f"the EU host is refused too: CUSTOMERIO_REGION is {configured!r})"
    )


async def _stopped_within(stop: asyncio.Event | None, seconds: float) -> bool:
    if stop is None:
        await asyncio.sleep(seconds)
        return False
    if stop.is_set():
        return True
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True


@dataclass(slots=True)
class _Pause:
    detail: str
    since: float
    probe_at: float
    delays: Iterator[float] = field(repr=False)
    logged_at: float = 0.0


class RegionGate:
    """Which API families are paused because Customer.io placed the account elsewhere.

    One per worker, outliving its runs (readiness reads ``status()``). The dispatcher asks
    ``admits`` before each request, reports ``pause`` on a ``WrongRegionError`` and
    ``delivered`` after a success; the cost on the hot path is one empty-dict test.
    """

    def __init__(
        self,
        hooks: Hooks | None = None,
        *,
        probe_first: float = PROBE_FIRST,
        probe_most: float = PROBE_MOST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hooks = hooks or Hooks()
        self.paused: dict[ApiName, _Pause] = {}
        self.checking = False  # the start-up check is waiting for its answer
        self._probe_first = probe_first
        self._probe_most = probe_most
        self._clock = clock

    def __repr__(self) -> str:
        return f"RegionGate({self.status()!r})"

    def status(self) -> str:
        """``ok``, ``checking region``, or ``paused: wrong region (<families>)``."""
        if self.paused:
            return f"paused: wrong region ({', '.join(sorted(self.paused))})"
        return "checking region" if self.checking else "ok"

    # --- start-up -----------------------------------------------------------------------------

    def judge(self, actual: str | None, configured: str) -> bool:
        """The start-up check's answer: True to deliver, else raise ``ConfigError``."""
        if actual is None:
            log.warning("the account region answer names no region; delivering unchecked")
            return True
        if actual != configured:
            raise self.refuse(
                f"the Customer.io account is in the {actual!r} region but CUSTOMERIO_REGION is "
                f"{configured!r}: set CUSTOMERIO_REGION={actual} (no operation was sent)"
            )
        log.info("the account region is %r, as configured", actual)
        for family in list(self.paused):
            self._resume(family)
        return True

    def refuse(self, detail: str) -> ConfigError:
        """Record a start-up mismatch on every family and return the error to raise."""
        log.error("refusing to deliver: %s", detail)
        for family in FAMILIES:
            if family not in self.paused:
                self.paused[family] = self._new_pause(detail)
                Hooks.fire(self.hooks.region_mismatch, family, detail)
        return ConfigError(detail)

    # --- run time -----------------------------------------------------------------------------

    def pause(self, family: ApiName, detail: str) -> float:
        """Customer.io answered ``family`` with a wrong region: pause it (or keep it paused).
        Returns the seconds its operations should wait: until the next probe."""
        now = self._clock()
        pause = self.paused.get(family)
        if pause is None:
            pause = self.paused[family] = self._new_pause(detail)
            log.error(
                "delivery to the Customer.io %s API is PAUSED: %s. Its operations stay in the "
                "outbox (none is dead-lettered); one is sent as a probe every few minutes",
                family,
                detail,
            )
            Hooks.fire(self.hooks.region_mismatch, family, detail)
        elif now - pause.logged_at >= LOG_EVERY:
            pause.logged_at = now
            log.error(
                "delivery to the Customer.io %s API is still paused after %.0f s: %s",
                family,
                now - pause.since,
                detail,
            )
        return self.wait(family)

    def admits(self, family: ApiName) -> bool:
        """Whether a request of ``family`` may go out: always unless it is paused; when it is,
        one request per probe interval (the probe), the next interval starting now."""
        if not self.paused:
            return True
        pause = self.paused.get(family)
        if pause is None:
            return True
        now = self._clock()
        if now < pause.probe_at:
            return False
        pause.probe_at = now + next(pause.delays)
        log.info("probing the paused Customer.io %s API with one request", family)
        return True

    def delivered(self, family: ApiName) -> None:
        """A request of ``family`` was accepted: the region is right (again)."""
        if self.paused and family in self.paused:
            self._resume(family)

    def wait(self, family: ApiName) -> float:
        """Seconds until ``family``'s next probe (never near zero, so that what is given back
        is not leased again at once); 0 when it is not paused."""
        pause = self.paused.get(family)
        floor = min(1.0, self._probe_first)
        return 0.0 if pause is None else max(floor, pause.probe_at - self._clock())

    def idle_for(self, families: Iterable[ApiName]) -> float | None:
        """When every one of ``families`` is paused and none is due for a probe: the seconds
        until the first probe is due (nothing is worth leasing until then); else None."""
        families = tuple(families)
        if not families or not self.paused or any(f not in self.paused for f in families):
            return None
        now = self._clock()
        first = min(self.paused[family].probe_at for family in families)
        return first - now if first > now else None

    def refusal(self) -> ConfigError:
        """The error ``drain`` raises when it cannot finish because of a pause."""
        details = "; ".join(f"{family}: {p.detail}" for family, p in sorted(self.paused.items()))
        return ConfigError(f"delivery is paused, operations stay in the outbox ({details})")

    def _new_pause(self, detail: str) -> _Pause:
        now = self._clock()
        delays = growing_delays(self._probe_first, self._probe_most)
        return _Pause(detail, now, now + next(delays), delays, now)

    def _resume(self, family: ApiName) -> None:
        pause = self.paused.pop(family)
        log.warning(
            "delivery to the Customer.io %s API resumes after %.0f s paused for a wrong region",
            family,
            self._clock() - pause.since,
        )
        Hooks.fire(self.hooks.region_resolved, family)
