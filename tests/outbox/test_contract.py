"""The ``Outbox`` contract (outbox/base.py), run against every backend.

A new backend joins by adding its name to ``BACKENDS`` and a branch to ``_open``. Time is
controlled with ``now=``: enqueue stamps the wall clock, so each test takes ``t`` after its
enqueues and speaks in offsets from it; nothing sleeps.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cio_relay import operations as ops
from cio_relay.operations import Operation
from cio_relay.outbox.base import SENDING_MARK, DeadLetterFilter, DeadReason, Lease, Outbox
from cio_relay.outbox.memory import MemoryOutbox

BACKENDS = ["memory", "sqlite", "redis"]


def _open(name: str, tmp_path: Path) -> Outbox:
    if name == "memory":
        return MemoryOutbox()
    if name == "sqlite":
        from cio_relay.outbox.sqlite import SqliteOutbox

        return SqliteOutbox(tmp_path / "outbox.db")
    raise AssertionError(name)


@pytest.fixture(params=BACKENDS)
def outbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Outbox]:
    box = (
        request.getfixturevalue("redis_outbox")  # tests/fixtures/redis_server.py
        if request.param == "redis"
        else _open(request.param, tmp_path)
    )
    yield box
    box.close()


def event(person: str, i: int = 0, *, created_at: float | None = None) -> Operation:
    return ops.track(person, "order_completed", {"i": i}, created_at=created_at)


def ids(leases: list[Lease]) -> list[str]:
    return [lease.op.op_id for lease in leases]


def drain_ids(outbox: Outbox, now: float) -> list[str]:
    """Lease and ack until nothing is due; the op ids in delivery order."""
    delivered: list[str] = []
    while leases := outbox.lease(100, 30, now=now):
        delivered += ids(leases)
        outbox.ack(leases)
    return delivered


# --- enqueue ------------------------------------------------------------------------------------


def test_enqueue_is_idempotent_by_op_id(outbox: Outbox) -> None:
    a, b = event("u1"), event("u2")
    assert outbox.enqueue([a, b, a]) == 2
    assert outbox.enqueue([a]) == 0
    assert outbox.enqueue([b, event("u3")]) == 1
    assert outbox.depth().pending == 3
    assert len(drain_ids(outbox, time.time())) == 3
    assert outbox.depth().pending == 0


def test_enqueue_of_a_dead_lettered_op_id_is_a_duplicate(outbox: Outbox) -> None:
    op = event("u1")
    outbox.enqueue([op])
    [lease] = outbox.lease(10, 30)
    outbox.dead_letter(lease, DeadReason.PERMANENT, "400 bad")
    assert outbox.enqueue([op]) == 0
    assert outbox.depth().pending == 0
    assert outbox.count_dead() == 1


def test_enqueue_stores_all_or_nothing(outbox: Outbox) -> None:
    good = [event("u1", 1), event("u2", 2)]
    with pytest.raises(TypeError):
        outbox.enqueue([*good, "not an operation", event("u3")])  # type: ignore[list-item]
    assert outbox.depth().pending == 0
    assert outbox.enqueue(good) == 2


def test_enqueue_from_many_threads_stores_everything(outbox: Outbox) -> None:
    per_thread = [[event(f"t{t}-{i % 7}", i) for i in range(200)] for t in range(8)]
    start = threading.Barrier(len(per_thread))
    added: list[int] = []

    def work(batch: list[Operation]) -> None:
        start.wait()
        added.append(sum(outbox.enqueue([op]) for op in batch))

    threads = [threading.Thread(target=work, args=(batch,)) for batch in per_thread]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(added) == 1600
    delivered = drain_ids(outbox, time.time())
    assert sorted(delivered) == sorted(op.op_id for batch in per_thread for op in batch)


# --- leasing and ordering -----------------------------------------------------------------------


def test_lease_hands_out_one_op_per_person_in_enqueue_order(outbox: Outbox) -> None:
    a = [event("a", i) for i in range(3)]
    b = [event("b", i) for i in range(2)]
    outbox.enqueue([a[0], b[0], a[1]])
    outbox.enqueue([a[2], b[1]])
    t = time.time()
    first = outbox.lease(10, 30, now=t)
    assert ids(first) == [a[0].op_id, b[0].op_id]
    assert outbox.lease(10, 30, now=t) == []  # both heads are out
    outbox.ack(first)
    assert ids(outbox.lease(10, 30, now=t)) == [a[1].op_id, b[1].op_id]


def test_a_leased_head_blocks_only_its_own_person(outbox: Outbox) -> None:
    a1, a2, b1 = event("a", 1), event("a", 2), event("b", 1)
    outbox.enqueue([a1, a2, b1])
    t = time.time()
    assert ids(outbox.lease(1, 30, now=t)) == [a1.op_id]
    assert ids(outbox.lease(10, 30, now=t)) == [b1.op_id]


def test_lease_respects_limit_and_gives_the_longest_due_first(outbox: Outbox) -> None:
    batch = [event(f"p{i}") for i in range(5)]
    outbox.enqueue(batch)
    t = time.time()
    assert ids(outbox.lease(2, 30, now=t)) == [op.op_id for op in batch[:2]]
    assert ids(outbox.lease(0, 30, now=t)) == []
    assert ids(outbox.lease(10, 30, now=t)) == [op.op_id for op in batch[2:]]


def test_lease_carries_attempts_lease_until_and_a_token(outbox: Outbox) -> None:
    op = event("u")
    outbox.enqueue([op])
    t = time.time()
    [lease] = outbox.lease(10, 30, now=t)
    assert lease.op == op
    assert (lease.attempts, lease.lease_until, lease.last_error) == (0, t + 30, None)
    assert lease.token


def test_retry_later_counts_attempts_keeps_error_and_waits_until_retry_at(
    outbox: Outbox,
) -> None:
    op, other = event("u", 1), event("u", 2)
    outbox.enqueue([op, other])
    t = time.time()
    [lease] = outbox.lease(10, 30, now=t)
    outbox.retry_later(lease, retry_at=t + 60, error="502 bad gateway", now=t)
    assert outbox.lease(10, 30, now=t + 59) == []  # the head waits; its follower waits too
    [again] = outbox.lease(10, 30, now=t + 60)
    assert again.op.op_id == op.op_id
    assert (again.attempts, again.last_error) == (1, "502 bad gateway")
    outbox.retry_later(again, retry_at=t + 100, error="503", now=t + 60)
    [third] = outbox.lease(10, 30, now=t + 100)
    assert (third.attempts, third.last_error) == (2, "503")


def test_a_person_waiting_to_retry_holds_up_nobody_else(outbox: Outbox) -> None:
    a1, a2, b1 = event("a", 1), event("a", 2), event("b", 1)
    outbox.enqueue([a1, a2])
    t = time.time()
    [lease] = outbox.lease(10, 30, now=t)
    outbox.retry_later(lease, retry_at=t + 60, error="x", now=t)
    outbox.enqueue([b1])
    assert ids(outbox.lease(10, 30, now=time.time())) == [b1.op_id]


def test_an_expired_lease_is_handed_out_again_and_the_stale_token_is_ignored(
    outbox: Outbox,
) -> None:
    op, follower = event("u", 1), event("u", 2)
    outbox.enqueue([op, follower])
    t = time.time()
    [stale] = outbox.lease(10, 30, now=t)
    assert outbox.lease(10, 30, now=t + 29) == []
    [fresh] = outbox.lease(10, 30, now=t + 31)
    assert fresh.op.op_id == op.op_id and fresh.token != stale.token
    assert fresh.lease_until == t + 61

    outbox.retry_later(stale, retry_at=t + 1000, error="late worker", now=t + 32)
    outbox.dead_letter(stale, DeadReason.PERMANENT, "late worker", now=t + 32)
    outbox.release([stale])
    assert outbox.count_dead() == 0
    assert outbox.lease(10, 30, now=t + 40) == []  # still leased by the fresh lease
    outbox.retry_later(fresh, retry_at=t + 50, error="real", now=t + 40)
    [third] = outbox.lease(10, 30, now=t + 50)
    assert (third.op.op_id, third.attempts, third.last_error) == (op.op_id, 1, "real")


def test_extend_keeps_a_busy_workers_leases_and_never_shortens_them(outbox: Outbox) -> None:
    a1, a2, b = event("a", 1), event("a", 2), event("b")
    outbox.enqueue([a1, a2, b])
    t = time.time()
    held = outbox.lease(10, 10, now=t)
    outbox.extend(held, 10, now=t + 8)  # the heartbeat: held until t + 18
    assert outbox.lease(10, 10, now=t + 17) == []
    assert outbox.depth(now=t + 17).leased == 2
    outbox.extend(held, 1, now=t + 8)  # shorter than what is held: no change
    assert outbox.lease(10, 10, now=t + 17) == []
    # Extended leases settle as usual, and run out like any lease once the heartbeat stops.
    [lease_a] = [lease for lease in held if lease.op == a1]
    outbox.ack([lease_a])
    assert set(ids(outbox.lease(10, 10, now=t + 18))) == {a2.op_id, b.op_id}


def test_extend_leaves_a_lease_taken_over_alone(outbox: Outbox) -> None:
    op = event("u")
    outbox.enqueue([op])
    t = time.time()
    [stale] = outbox.lease(10, 10, now=t)
    [fresh] = outbox.lease(10, 10, now=t + 11)  # the first worker stalled past its lease
    outbox.extend([stale], 100, now=t + 12)  # its late heartbeat must not keep the new lease
    [third] = outbox.lease(10, 10, now=t + 22)
    assert third.op == op and third.token not in (stale.token, fresh.token)
    # Settled or released leases are not brought back by an extend either.
    outbox.release([third], now=t + 22)
    outbox.extend([third], 100, now=t + 22)
    assert ids(outbox.lease(10, 10, now=t + 23)) == [op.op_id]


def test_ack_removes_for_good_even_with_a_stale_token(outbox: Outbox) -> None:
    op, follower = event("u", 1), event("u", 2)
    outbox.enqueue([op, follower])
    t = time.time()
    [stale] = outbox.lease(10, 30, now=t)
    [fresh] = outbox.lease(10, 30, now=t + 31)
    outbox.ack([stale])
    assert ids(outbox.lease(10, 30, now=t + 32)) == [follower.op_id]
    outbox.ack([fresh])  # already gone: harmless
    assert outbox.depth(now=t + 32).pending == 1
    assert outbox.count_dead() == 0


def test_release_gives_back_without_counting_an_attempt(outbox: Outbox) -> None:
    op, other = event("a"), event("b")
    outbox.enqueue([op, other])
    t = time.time()
    leases = outbox.lease(10, 30, now=t)
    outbox.release(leases)
    again = outbox.lease(10, 30, now=t)
    assert ids(again) == [op.op_id, other.op_id]
    assert [lease.attempts for lease in again] == [0, 0]


def test_release_with_delay_defers_without_counting_an_attempt(outbox: Outbox) -> None:
    a1, a2, b = event("a", 1), event("a", 2), event("b")
    outbox.enqueue([a1, a2, b])
    t = time.time()
    leases = outbox.lease(10, 30, now=t)
    [deferred] = [lease for lease in leases if lease.op == a1]
    outbox.retry_later(deferred, retry_at=t, error="503 once", now=t)
    [deferred] = outbox.lease(10, 30, now=t)
    outbox.release([deferred], delay=5, now=t)
    # Not due again before the delay, and the person's next op stays behind it (order kept).
    assert outbox.lease(10, 30, now=t + 4) == []
    assert outbox.depth(now=t + 4).scheduled == 1
    [again] = outbox.lease(10, 30, now=t + 5)
    assert again.op == a1
    assert (again.attempts, again.last_error) == (1, "503 once")


def test_a_send_marked_sending_shows_the_mark_to_the_next_leaser(outbox: Outbox) -> None:
    op = ops.send_email(
        to="ada@example.com", identifiers={"id": "ada"}, transactional_message_id="welcome"
    )
    outbox.enqueue([op])
    t = time.time()
    [lease] = outbox.lease(10, 30, now=t)
    outbox.mark_sending(lease)
    # The worker dies here: nothing settles the lease; it runs out and the op is leased again.
    [again] = outbox.lease(10, 30, now=t + 31)
    assert (again.op, again.attempts, again.last_error) == (op, 0, SENDING_MARK)
    # A known outcome overwrites the mark; a lease no longer held marks nothing.
    outbox.retry_later(again, retry_at=t + 31, error="503 Service Unavailable", now=t + 31)
    outbox.mark_sending(again)
    outbox.mark_sending(lease)
    [third] = outbox.lease(10, 30, now=t + 31)
    assert (third.attempts, third.last_error) == (1, "503 Service Unavailable")


def test_dead_letter_unblocks_the_persons_next_op(outbox: Outbox) -> None:
    a1, a2 = event("a", 1), event("a", 2)
    outbox.enqueue([a1, a2])
    t = time.time()
    [lease] = outbox.lease(10, 30, now=t)
    outbox.retry_later(lease, retry_at=t + 1, error="503", now=t)
    [lease] = outbox.lease(10, 30, now=t + 1)
    outbox.dead_letter(lease, DeadReason.PERMANENT, "400: invalid email", now=t + 2)
    assert ids(outbox.lease(10, 30, now=t + 2)) == [a2.op_id]
    [dead] = outbox.list_dead(now=t + 2)
    assert dead.op == a1
    assert (dead.reason, dead.detail, dead.attempts, dead.dead_at) == (
        DeadReason.PERMANENT,
        "400: invalid email",
        2,  # one retried attempt, plus the attempt that was refused
        t + 2,
    )


def test_dead_letters_decided_before_sending_count_no_extra_attempt(outbox: Outbox) -> None:
    outbox.enqueue([event("a"), event("b")])
    first, second = outbox.lease(10, 30)
    outbox.dead_letter(first, DeadReason.MAX_AGE, "too old")
    outbox.dead_letter(second, DeadReason.INVALID, "cannot build")
    assert sorted(dead.attempts for dead in outbox.list_dead()) == [0, 0]


# --- dead letters -------------------------------------------------------------------------------


def _bury(outbox: Outbox) -> tuple[dict[str, Operation], float]:
    """Four dead letters: track/permanent at t, identify/ambiguous at t+10, track/max_attempts
    at t+20, send_email/ambiguous at t+30; returns them by name, and t."""
    made = {
        "track-old": event("a"),
        "identify": ops.identify("b", {"plan": "pro"}),
        "track-new": event("c"),
        "email": ops.send_email(to="d@example.com", transactional_message_id="welcome"),
    }
    reasons = [
        DeadReason.PERMANENT,
        DeadReason.AMBIGUOUS,
        DeadReason.MAX_ATTEMPTS,
        DeadReason.AMBIGUOUS,
    ]
    outbox.enqueue(list(made.values()))
    t = time.time()
    leases = {lease.op.op_id: lease for lease in outbox.lease(10, 300, now=t)}
    for age, (op, reason) in enumerate(zip(made.values(), reasons, strict=True)):
        outbox.dead_letter(leases[op.op_id], reason, f"detail {age}", now=t + 10 * age)
    return made, t


def test_list_dead_is_newest_first_with_pagination(outbox: Outbox) -> None:
    made, t = _bury(outbox)
    newest_first = [op.op_id for op in reversed(made.values())]
    now = t + 40
    assert [d.op.op_id for d in outbox.list_dead(now=now)] == newest_first
    assert [d.op.op_id for d in outbox.list_dead(limit=2, now=now)] == newest_first[:2]
    assert [d.op.op_id for d in outbox.list_dead(limit=2, offset=2, now=now)] == newest_first[2:]
    assert outbox.list_dead(offset=4, now=now) == []
    assert outbox.count_dead(now=now) == 4


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (DeadLetterFilter(kind="track"), ["track-new", "track-old"]),
        (DeadLetterFilter(reason="ambiguous"), ["email", "identify"]),
        (DeadLetterFilter(kind="track", reason="permanent"), ["track-old"]),
        (DeadLetterFilter(older_than=14), ["identify", "track-old"]),  # now = t + 25
        (DeadLetterFilter(older_than=24), ["track-old"]),
        (DeadLetterFilter(op_ids=("identify", "email")), ["email", "identify"]),
        (DeadLetterFilter(kind="page"), []),
    ],
)
def test_dead_letter_filters(outbox: Outbox, where: DeadLetterFilter, expected: list[str]) -> None:
    made, t = _bury(outbox)
    if where.op_ids:
        where = DeadLetterFilter(op_ids=tuple(made[name].op_id for name in where.op_ids))
    now = t + 25
    want = [made[name].op_id for name in expected]  # newest first
    assert [d.op.op_id for d in outbox.list_dead(where, now=now)] == want
    assert outbox.count_dead(where, now=now) == len(want)
    assert outbox.purge(where, now=now) == len(want)
    assert outbox.count_dead(now=now) == 4 - len(want)
    assert outbox.count_dead(where, now=now) == 0


def test_replay_keeps_op_ids_resets_attempts_and_queues_at_the_tail(outbox: Outbox) -> None:
    a1, a2 = event("a", 1), event("a", 2)
    outbox.enqueue([a1, a2])
    t = time.time()
    [lease] = outbox.lease(10, 30, now=t)
    outbox.retry_later(lease, retry_at=t, error="503", now=t)
    [lease] = outbox.lease(10, 30, now=t)
    outbox.dead_letter(lease, DeadReason.MAX_ATTEMPTS, "gave up", now=t)
    outbox.enqueue([a3 := event("a", 3)])

    assert outbox.replay(DeadLetterFilter(op_ids=(a1.op_id,)), now=t + 1) == 1
    assert outbox.count_dead() == 0
    delivered: list[Lease] = []
    while leases := outbox.lease(100, 30, now=t + 1):
        delivered += leases
        outbox.ack(leases)
    assert ids(delivered) == [a2.op_id, a3.op_id, a1.op_id]  # to the tail, same op id
    assert delivered[2].op == a1
    assert (delivered[2].attempts, delivered[2].last_error) == (0, None)


def test_replay_and_purge_by_filter_leave_the_rest(outbox: Outbox) -> None:
    made, t = _bury(outbox)
    assert outbox.replay(DeadLetterFilter(reason="ambiguous"), now=t + 40) == 2
    assert sorted(drain_ids(outbox, t + 40)) == sorted(
        [made["email"].op_id, made["identify"].op_id]
    )
    assert outbox.purge(DeadLetterFilter(older_than=30), now=t + 40) == 1
    assert [d.op.op_id for d in outbox.list_dead(now=t + 40)] == [made["track-new"].op_id]
    assert outbox.purge(DeadLetterFilter(), now=t + 40) == 1
    assert outbox.count_dead() == 0


# --- depth --------------------------------------------------------------------------------------


def test_depth_by_state_and_oldest_age(outbox: Outbox) -> None:
    empty = outbox.depth()
    assert (empty.ready, empty.scheduled, empty.leased, empty.dead) == (0, 0, 0, 0)
    assert empty.oldest_waiting_age is None

    t0 = time.time()
    outbox.enqueue([event("a", 1, created_at=t0 - 100), event("a", 2)])
    outbox.enqueue([event(p) for p in ("b", "c", "d", "e")])
    t = time.time()
    leases = {lease.op.person_key: lease for lease in outbox.lease(10, 30, now=t)}
    outbox.retry_later(leases["id:b"], retry_at=t + 60, error="x", now=t)
    outbox.dead_letter(leases["id:c"], DeadReason.PERMANENT, "x", now=t)
    outbox.release([leases["id:d"]])
    # a#1 leased (a#2 waits behind it), b scheduled, c dead, d released (ready), e leased
    depth = outbox.depth(now=t + 1)
    assert (depth.ready, depth.scheduled, depth.leased, depth.dead) == (2, 1, 2, 1)
    assert depth.pending == 5
    assert depth.oldest_waiting_age == pytest.approx(t + 1 - (t0 - 100))

    later = outbox.depth(now=t + 31)  # the leases expired: ready again
    assert (later.ready, later.scheduled, later.leased) == (4, 1, 0)
    assert outbox.depth(now=t + 61).ready == 5
