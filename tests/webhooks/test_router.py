"""The router: patterns, at-least-once handling from the inbox, backoff, parking, async handlers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cio_relay.webhooks.events import EmailEvent, Event, EventName, parse_event
from cio_relay.webhooks.inbox import HandlerState, MemoryInbox
from cio_relay.webhooks.router import HandlerRetry, ParkEvent, Router
from cio_relay.webhooks.sqlite_inbox import SQLiteInbox
from tests.webhooks.helpers import payload

T0 = 1_700_000_000.0


def _store(inbox: MemoryInbox | SQLiteInbox, *events: bytes, at: float = T0) -> list[str]:
    ids = []
    for raw in events:
        event = parse_event(raw)
        inbox.store(event, raw, received_at=at)
        ids.append(event.event_id)
    return ids


@pytest.fixture
def inbox() -> Iterator[MemoryInbox]:
    memory = MemoryInbox()
    yield memory
    memory.close()


def test_exact_wildcard_and_catch_all_patterns(inbox: MemoryInbox) -> None:
    router = Router()
    seen: list[tuple[str, str]] = []
    router.on("email_bounced")(lambda e: seen.append(("exact", e.name)))
    router.on("email.*")(lambda e: seen.append(("email.*", e.name)))
    router.on("*")(lambda e: seen.append(("*", e.name)))
    _store(inbox, payload("email", "bounced"), payload("email", "opened"), payload("sms", "sent"))
    report = router.drain(inbox, now=T0)
    assert report.done == 3 and report.retried == report.parked == 0
    assert seen == [
        ("exact", "email_bounced"),
        ("email.*", "email_bounced"),
        ("*", "email_bounced"),
        ("email.*", "email_opened"),
        ("*", "email_opened"),
        ("*", "sms_sent"),
    ]
    assert inbox.counts().done == 3


def test_handlers_run_in_registration_order_and_once_each() -> None:
    router = Router()
    calls: list[str] = []

    def first(event: Event) -> None:
        calls.append("first")

    def second(event: Event) -> None:
        calls.append("second")

    router.add("*", second)
    router.add("email_opened", first)
    router.add("email.*", second)  # registered twice: runs once, at its first position
    event = parse_event(payload("email", "opened"))
    assert router.handlers_for(event) == (second, first)


def test_decorator_returns_the_function_and_accepts_event_names() -> None:
    router = Router()

    @router.on(EventName.EMAIL_SPAMMED)
    def on_spam(event: Event) -> None:
        """A docstring that survives decoration."""

    assert on_spam.__doc__ == "A docstring that survives decoration."
    assert router.handlers_for(parse_event(payload("email", "spammed"))) == (on_spam,)
    assert router.handlers_for(parse_event(payload("email", "opened"))) == ()


@pytest.mark.parametrize(
    "pattern", ["", "email*", "*.*", "*.Bounced", "Email_bounced", "email.bounced", "a b"]
)
def test_bad_patterns_are_refused_with_a_clear_error(pattern: str) -> None:
    with pytest.raises(ValueError, match="pattern"):
        Router().add(pattern, lambda e: None)


def test_a_metric_wildcard_matches_that_metric_from_every_channel() -> None:
    router = Router()
    seen: list[str] = []
    router.on("*.unsubscribed")(lambda e: seen.append(e.name))
    for object_type in ("customer", "email", "sms", "whatsapp", "in_app"):
        for handler in router.handlers_for(parse_event(payload(object_type, "unsubscribed"))):
            handler(parse_event(payload(object_type, "unsubscribed")))
    assert seen == [
        "customer_unsubscribed",
        "email_unsubscribed",
        "sms_unsubscribed",
        "whatsapp_unsubscribed",
        "in_app_unsubscribed",
    ]
    assert router.handlers_for(parse_event(payload("email", "subscribed"))) == ()


def test_unknown_metrics_are_routed_too(inbox: MemoryInbox) -> None:
    router = Router()
    seen: list[str] = []
    router.on("carrier_pigeon_landed")(lambda e: seen.append(e.name))
    router.on("carrier_pigeon.*")(lambda e: seen.append("wildcard"))
    _store(inbox, payload("carrier_pigeon", "landed"))
    router.drain(inbox, now=T0)
    assert seen == ["carrier_pigeon_landed", "wildcard"]


def test_events_without_handlers_are_done(inbox: MemoryInbox) -> None:
    _store(inbox, payload(), payload())
    assert Router().drain(inbox, now=T0).done == 2
    assert inbox.counts().pending == 0


def test_a_failing_handler_is_retried_with_backoff_then_succeeds(inbox: MemoryInbox) -> None:
    router = Router(retry=HandlerRetry(base=10, cap=1000, max_attempts=5, jitter=False))
    failures = [RuntimeError("smtp down"), RuntimeError("still down")]
    calls: list[float] = []

    @router.on("email_bounced")
    def suppress(event: Event) -> None:
        calls.append(len(calls))
        if failures:
            raise failures.pop(0)

    _store(inbox, payload("email", "bounced"))
    assert router.drain(inbox, now=T0).retried == 1
    [waiting] = inbox.due(10, now=T0 + 10)
    assert waiting.attempts == 1 and waiting.next_attempt_at == T0 + 10
    assert "suppress: RuntimeError: smtp down" in (waiting.last_error or "")
    assert router.drain(inbox, now=T0 + 9.9).handled == 0  # not due yet: nothing runs
    assert router.drain(inbox, now=T0 + 10).retried == 1
    assert inbox.due(10, now=T0 + 29.9) == []
    assert inbox.due(10, now=T0 + 30)[0].next_attempt_at == T0 + 30  # 10 s, then 20 s
    assert router.drain(inbox, now=T0 + 30).done == 1
    assert len(calls) == 3 and inbox.counts().done == 1 and inbox.list_parked() == []


def test_repeated_failure_parks_the_event_with_its_error(inbox: MemoryInbox) -> None:
    router = Router(retry=HandlerRetry(base=1, cap=4, max_attempts=3, jitter=False))

    @router.on("*")
    def broken(event: Event) -> None:
        raise ValueError("cannot handle")

    [event_id] = _store(inbox, payload())
    now = T0
    outcomes = []
    for _ in range(3):
        report = router.drain(inbox, now=now)
        outcomes.append((report.retried, report.parked))
        now += 10
    assert outcomes == [(1, 0), (1, 0), (0, 1)]
    [parked] = inbox.list_parked()
    assert parked.event_id == event_id and parked.attempts == 3
    assert parked.state is HandlerState.PARKED and "ValueError: cannot handle" in (
        parked.last_error or ""
    )
    assert router.drain(inbox, now=now + 10_000).handled == 0  # parked events are not retried


def test_an_operator_retries_a_parked_event_after_the_fix(inbox: MemoryInbox) -> None:
    router = Router(retry=HandlerRetry(max_attempts=1))
    broken = True
    handled: list[str] = []

    @router.on("*")
    def flaky(event: Event) -> None:
        if broken:
            raise RuntimeError("bug")
        handled.append(event.event_id)

    [event_id] = _store(inbox, payload())
    assert router.drain(inbox, now=T0).parked == 1
    broken = False
    assert inbox.retry_parked([event_id], now=T0 + 1) == 1
    assert router.drain(inbox, now=T0 + 1).done == 1
    assert handled == [event_id]


def test_park_event_parks_at_once(inbox: MemoryInbox) -> None:
    router = Router()
    router.on("*")(lambda e: (_ for _ in ()).throw(ParkEvent("no identifiers")))
    _store(inbox, payload())
    assert router.drain(inbox, now=T0).parked == 1
    assert inbox.list_parked()[0].last_error == "parked by handler: no identifiers"


def test_one_failing_event_does_not_hold_up_the_others(inbox: MemoryInbox) -> None:
    router = Router(retry=HandlerRetry(base=60, jitter=False))
    done: list[str] = []

    @router.on("*")
    def handler(event: Event) -> None:
        if event.metric == "bounced":
            raise RuntimeError("no")
        done.append(event.metric)

    _store(inbox, payload("email", "bounced"), payload("email", "opened"), payload("email", "sent"))
    report = router.drain(inbox, now=T0)
    assert (report.done, report.retried) == (2, 1) and done == ["opened", "sent"]


def test_async_handlers_are_awaited(inbox: MemoryInbox) -> None:
    router = Router()
    seen: list[str] = []

    @router.on("email.*")
    async def record(event: Event) -> None:
        assert isinstance(event, EmailEvent)
        seen.append(event.metric)

    _store(inbox, payload("email", "opened"))
    assert router.drain(inbox, now=T0).done == 1 and seen == ["opened"]


def test_handlers_run_again_after_a_crash_before_done(tmp_path: Path) -> None:
    """At least once: an event whose handlers ran but was not marked done runs again."""
    path = tmp_path / "in.db"
    with SQLiteInbox(path) as inbox:
        _store(inbox, payload("email", "bounced"))
        # The "crash": handlers ran (we read the due event) but mark_done never happened.
        assert len(inbox.due(10, now=T0)) == 1
    calls: list[str] = []
    router = Router()
    router.on("email_bounced")(lambda e: calls.append(e.event_id))
    with SQLiteInbox(path) as reopened:
        assert router.drain(reopened, now=T0).done == 1
    assert len(calls) == 1


def test_retry_policy_validation_and_jitter_bounds() -> None:
    with pytest.raises(ValueError, match="base"):
        HandlerRetry(base=0)
    with pytest.raises(ValueError, match="max_attempts"):
        HandlerRetry(max_attempts=0)
    retry = HandlerRetry(base=2, cap=100)
    delays = [retry.delay(3) for _ in range(200)]
    assert all(6.0 <= d <= 10.0 for d in delays) and len(set(delays)) > 1
    assert HandlerRetry(base=2, cap=100, jitter=False).delay(30) == 100
