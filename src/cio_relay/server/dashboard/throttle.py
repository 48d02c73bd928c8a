"""Failed dashboard logins, limited per client and overall: past a limit, 429 with Retry-After.

The numbers, and why:

- **10 failures per client in 10 minutes.** A person mistyping or pasting the wrong key a few
  times never meets it; a script guessing from one address gets 10 guesses per 10 minutes.
- **100 failures overall in 10 minutes**, from every client together: a guesser spread over many
  addresses (or IPv6 addresses, which are counted per /64 network since one host holds a whole
  /64) gets 14,400 guesses a day. Against keys of at least 32 characters (``config.py``) that is
  no chance at all; the limit bounds the work and the noise such a guesser causes.
- The window slides: a client may try again as soon as its oldest counted failure is 10 minutes
  old, and ``Retry-After`` says when that is. A successful login clears the client's failures.

While throttled, a login is refused before the key is even checked, so guesses made then tell
nothing. The cost: someone failing on purpose can hold off new logins (per client, or for all
clients once the overall limit is reached) for up to 10 minutes at a time; sessions already
open, and scripts with an ``Authorization`` header, are never affected.

The counts are kept in this process's memory: a restart forgets them (a guesser gains one more
window), and N processes serving the dashboard allow N times the numbers. Memory stays bounded
without pruning work: a failure is counted only while under the limits, so at most 100
timestamps are held overall and at most 100 clients are known at once.

The client is the connection's peer as uvicorn reports it: behind a reverse proxy that is the
proxy, unless the proxy is trusted to name the client (``CIO_RELAY_TRUSTED_PROXIES``).
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import deque
from collections.abc import Callable

__all__ = ["LoginThrottle", "client_key"]

PER_CLIENT = 10
OVERALL = 100
WINDOW = 600.0


def client_key(host: str | None) -> str:
    """What failures are counted against: the IPv4 address, the IPv6 /64, else the text."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # a Unix socket path or a test client's name
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class LoginThrottle:
    """Counts failed logins in a sliding window; see the module docstring."""

    def __init__(
        self,
        *,
        per_client: int = PER_CLIENT,
        overall: int = OVERALL,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_client = per_client
        self.overall = overall
        self.window = window
        self._clock = clock
        self._all: deque[float] = deque()
        self._by_client: dict[str, deque[float]] = {}

    def retry_after(self, client: str) -> int | None:
        """Whole seconds ``client`` must wait before its next attempt, or None if it may try."""
        now = self._clock()
        self._forget_before(now - self.window)
        waits = []
        mine = self._by_client.get(client)
        if mine is not None and len(mine) >= self.per_client:
            waits.append(mine[0] + self.window - now)
        if len(self._all) >= self.overall:
            waits.append(self._all[0] + self.window - now)
        return max(1, math.ceil(max(waits))) if waits else None

    def failed(self, client: str) -> None:
        now = self._clock()
        self._all.append(now)
        self._by_client.setdefault(client, deque()).append(now)

    def succeeded(self, client: str) -> None:
        self._by_client.pop(client, None)

    def _forget_before(self, cutoff: float) -> None:
        while self._all and self._all[0] <= cutoff:
            self._all.popleft()
        for client in [c for c, times in self._by_client.items() if times[-1] <= cutoff]:
            del self._by_client[client]
        for times in self._by_client.values():
            while times[0] <= cutoff:
                times.popleft()
