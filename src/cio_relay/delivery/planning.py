"""Which requests a lease of operations becomes.

Track operations that have a v2 form travel packed into ``/api/v2/batch`` requests by bytes
(``batching.pack``); the rest go one request each. Some operations are not sent at all but
dead-lettered at once (``Refusal``): too old for the retry policy, caught mid-send by a worker
that stopped (and not safe to send twice), or no longer buildable into a request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cio_relay import kept_json
from cio_relay.delivery.batching import pack
from cio_relay.delivery.leases import LeaseGroup
from cio_relay.delivery.retry import RetryPolicy
from cio_relay.operations import LIMITS, Api, Operation
from cio_relay.outbox.base import SENDING_MARK, DeadReason, Lease

__all__ = ["Planned", "Refusal", "plan_requests"]


@dataclass(slots=True, eq=False)
class Planned:
    """One request to send: a v2 batch (``items``) or a v1 request for its single lease."""

    api: Api
    group: LeaseGroup
    leases: list[Lease]
    items: list[bytes] | None = None  # v2 batch items, serialised once; None for a v1 request
    written: bool = False  # set just before the request goes out: from then on it is ambiguous


@dataclass(frozen=True, slots=True)
class Refusal:
    """An operation to dead-letter instead of sending."""

    lease: Lease
    reason: DeadReason
    detail: str


def plan_requests(
    leases: list[Lease],
    group: LeaseGroup,
    *,
    policy: RetryPolicy,
    may_resend: Callable[[Operation], bool],
    batch_max_bytes: int,
    batches: bool,
    now: float,
) -> tuple[list[Planned], list[Refusal]]:
    """The requests ``leases`` become, and the operations refused; ``batches``: a Track client
    that sends v2 batches is configured."""
    plans: list[Planned] = []
    refused: list[Refusal] = []
    batchable: list[tuple[Lease, bytes]] = []
    for lease in leases:
        op = lease.op
        if (refusal := _refusal(lease, policy, may_resend, now)) is not None:
            refused.append(refusal)
            continue
        try:
            item = op.v2_item()
            # Kept until the request is answered: right-sized (see kept_json).
            serialised = kept_json.dumps(item) if item is not None else None
        except Exception as exc:  # a stored op that no longer builds: keep it, don't crash
            refused.append(Refusal(lease, DeadReason.INVALID, f"cannot build request: {exc!r}"))
            continue
        if serialised is not None and len(serialised) <= LIMITS.v2_item_bytes and batches:
            batchable.append((lease, serialised))
        else:
            plans.append(Planned(op.api, group, [lease]))
    for packed in pack(batchable, batch_max_bytes):
        held = [lease for lease, _ in packed]
        plans.append(Planned(Api.TRACK, group, held, [item for _, item in packed]))
    return plans, refused


def _refusal(
    lease: Lease, policy: RetryPolicy, may_resend: Callable[[Operation], bool], now: float
) -> Refusal | None:
    op = lease.op
    if policy.too_old(op.created_at, now):
        return Refusal(
            lease,
            DeadReason.MAX_AGE,
            f"not delivered within {policy.max_age:.0f} s "
            f"({lease.attempts} attempts; last error: {lease.last_error})",
        )
    if lease.last_error == SENDING_MARK and not may_resend(op):
        return Refusal(
            lease,
            DeadReason.AMBIGUOUS,
            f"a worker stopped (crash, kill or lost lease) while sending this "
            f"{op.kind.value}: Customer.io may or may not have processed it; replay "
            "it only if you know it was not",
        )
    return None
