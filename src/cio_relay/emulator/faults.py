"""Fault injection: errors, latency, dropped connections and a rate limit, on demand.

``POST /_emulator/faults`` adds one rule; every rule whose ``path`` prefix matches a request is
applied to it (latency adds up; the first rule that fails the request decides how). A rule with
``count`` applies to the next ``count`` matching requests only and then retires, which together
with rates of 0 or 1 makes faults exactly reproducible in tests; ``seed`` pins the random draws
of fractional rates.

Rule fields:

- ``path``: a path prefix (default ``/``: every API path; ``/_emulator/`` is never faulted);
- ``error_rate`` (0..1) with ``status_codes`` (used in turn, default [503]) and ``retry_after``
  (seconds, sent as ``Retry-After`` with injected 429/503);
- ``latency_ms``: added before the request is handled;
- ``drop_rate`` (0..1): read the request, start the answer, then cut the connection; with
  ``drop_after_processing`` the request is applied first ("processed, but the answer was lost");
- ``rate_limit``: ``{"rps": n, "retry_after": s}``, a token bucket of ``max(1, rps)`` tokens;
  over it, 429 with ``Retry-After``;
- ``count``: apply to the next N matching requests only; ``seed``: pin the random draws.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DROP", "FaultDecision", "FaultRule", "Faults", "InvalidFault"]

DROP = -1  # the decision's status when the connection is to be cut


class InvalidFault(ValueError):
    """A fault rule that cannot work; the message names the field."""


@dataclass
class FaultDecision:
    latency: float = 0.0
    status: int | None = None  # None: proceed; DROP; or the HTTP status to answer
    retry_after: float | None = None
    rate_limited: bool = False
    process_first: bool = False  # for DROP: apply the request, then lose the answer


@dataclass
class FaultRule:
    id: int
    path: str = "/"
    error_rate: float = 0.0
    status_codes: tuple[int, ...] = (503,)
    latency_ms: float = 0.0
    drop_rate: float = 0.0
    drop_after_processing: bool = False
    rps: float | None = None
    rate_limit_retry_after: float = 1.0
    retry_after: float | None = None
    remaining: int | None = None
    seed: int | None = None
    _random: random.Random = field(default_factory=random.Random, repr=False)
    _codes: itertools.cycle[int] = field(init=False, repr=False)
    _tokens: float = field(default=0.0, repr=False)
    _refilled_at: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._codes = itertools.cycle(self.status_codes)
        self._tokens = max(1.0, self.rps) if self.rps else 0.0
        self._refilled_at = time.monotonic()

    def to_json(self) -> dict[str, Any]:
        rule: dict[str, Any] = {
            "id": self.id,
            "path": self.path,
            "error_rate": self.error_rate,
            "status_codes": list(self.status_codes),
            "latency_ms": self.latency_ms,
            "drop_rate": self.drop_rate,
            "drop_after_processing": self.drop_after_processing,
            "retry_after": self.retry_after,
            "count": self.remaining,
            "seed": self.seed,
        }
        if self.rps is not None:
            rule["rate_limit"] = {"rps": self.rps, "retry_after": self.rate_limit_retry_after}
        return rule

    def _take_token(self) -> bool:
        assert self.rps is not None
        now = time.monotonic()
        capacity = max(1.0, self.rps)  # a burst of at least one request, even below 1 rps
        self._tokens = min(capacity, self._tokens + (now - self._refilled_at) * self.rps)
        self._refilled_at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def apply(self, decision: FaultDecision) -> None:
        decision.latency += self.latency_ms / 1000.0
        if decision.status is not None:
            return
        if self.rps is not None and not self._take_token():
            decision.status, decision.rate_limited = 429, True
            decision.retry_after = self.rate_limit_retry_after
        elif self.drop_rate and self._random.random() < self.drop_rate:
            decision.status = DROP
            decision.process_first = self.drop_after_processing
        elif self.error_rate and self._random.random() < self.error_rate:
            decision.status = next(self._codes)
            if decision.status in (429, 503):
                decision.retry_after = self.retry_after


class Faults:
    """The active rules, in the order they were added."""

    def __init__(self) -> None:
        self.rules: list[FaultRule] = []
        self._ids = itertools.count(1)

    def clear(self) -> None:
        self.rules.clear()

    def add(self, spec: Any) -> FaultRule:
        rule = parse_rule(next(self._ids), spec)
        self.rules.append(rule)
        return rule

    def decide(self, path: str) -> FaultDecision | None:
        """What the active rules do to a request for ``path``; None when no rule matches."""
        decision: FaultDecision | None = None
        for rule in self.rules:
            if not path.startswith(rule.path):
                continue
            decision = decision or FaultDecision()
            rule.apply(decision)
            if rule.remaining is not None:
                rule.remaining -= 1
        if decision is not None:
            self.rules = [r for r in self.rules if r.remaining is None or r.remaining > 0]
        return decision


_KNOWN = {
    "path",
    "error_rate",
    "status_codes",
    "latency_ms",
    "drop_rate",
    "drop_after_processing",
    "rate_limit",
    "retry_after",
    "count",
    "seed",
}


def _rate(spec: dict[str, Any], name: str) -> float:
    value = spec.get(name, 0.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise InvalidFault(f"{name} must be a number from 0 to 1, not {value!r}")
    return float(value)


def _non_negative(spec: dict[str, Any], name: str, default: float | None) -> float | None:
    value = spec.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidFault(f"{name} must be a number, not {value!r}")
    if value < 0:
        raise InvalidFault(f"{name} must not be negative, not {value!r}")
    return float(value)


def parse_rule(rule_id: int, spec: Any) -> FaultRule:
    if not isinstance(spec, dict):
        raise InvalidFault("a fault must be a JSON object")
    unknown = sorted(set(spec) - _KNOWN)
    if unknown:
        raise InvalidFault(f"unknown fault fields: {', '.join(unknown)}")
    codes = spec.get("status_codes", [503])
    if (
        not isinstance(codes, list)
        or not codes
        or not all(isinstance(c, int) and 400 <= c <= 599 for c in codes)
    ):
        raise InvalidFault("status_codes must be a non-empty list of 4xx/5xx status codes")
    path = spec.get("path", "/")
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidFault("path must be a path prefix starting with '/'")
    count = spec.get("count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise InvalidFault(f"count must be a positive integer, not {count!r}")
    seed = spec.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise InvalidFault(f"seed must be an integer, not {seed!r}")
    rps, limit_retry_after = None, 1.0
    if spec.get("rate_limit") is not None:
        limit = spec["rate_limit"]
        if not isinstance(limit, dict):
            raise InvalidFault('rate_limit must be an object like {"rps": 10, "retry_after": 1}')
        rps = _non_negative(limit, "rps", None)
        if not rps:
            raise InvalidFault("rate_limit.rps must be a positive number")
        limit_retry_after = _non_negative(limit, "retry_after", 1.0) or 0.0
    process_first = spec.get("drop_after_processing", False)
    if not isinstance(process_first, bool):
        raise InvalidFault(f"drop_after_processing must be true or false, not {process_first!r}")
    return FaultRule(
        id=rule_id,
        path=path,
        error_rate=_rate(spec, "error_rate"),
        status_codes=tuple(codes),
        latency_ms=_non_negative(spec, "latency_ms", 0.0) or 0.0,
        drop_rate=_rate(spec, "drop_rate"),
        drop_after_processing=process_first,
        rps=rps,
        rate_limit_retry_after=limit_retry_after,
        retry_after=_non_negative(spec, "retry_after", None),
        remaining=count,
        seed=seed,
    )
