"""The framework-free adapter function behind the Django and Flask views."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cio_relay.webhooks.adapters import handle_webhook, handle_webhook_stream
from cio_relay.webhooks.events import parse_event
from cio_relay.webhooks.inbox import InboxCounts, MemoryInbox
from cio_relay.webhooks.intake import WebhookIntake
from tests.webhooks.helpers import KEY, payload, signed

NOW = 1_700_000_000


@pytest.fixture
def inbox() -> Iterator[MemoryInbox]:
    memory = MemoryInbox()
    yield memory
    memory.close()


@pytest.fixture
def intake(inbox: MemoryInbox) -> WebhookIntake:
    return WebhookIntake(inbox, [KEY], max_body=2_000, clock=lambda: float(NOW))


def test_an_authentic_event_is_stored(intake: WebhookIntake, inbox: MemoryInbox) -> None:
    body = payload()
    assert handle_webhook(intake, body, signed(body, timestamp=NOW)) == (
        200,
        b'{"status":"stored"}',
    )
    assert handle_webhook(intake, body, signed(body, timestamp=NOW)) == (
        200,
        b'{"status":"duplicate"}',
    )
    assert inbox.counts().pending == 1


@pytest.mark.parametrize("case", [str.lower, str.upper, str.title])
def test_header_names_are_matched_case_insensitively(
    intake: WebhookIntake, case: Callable[[str], str]
) -> None:
    body = payload()
    headers = {case(name): value for name, value in signed(body, timestamp=NOW).items()}
    assert handle_webhook(intake, body, headers)[0] == 200


def test_a_bad_signature_is_401_with_no_body(intake: WebhookIntake) -> None:
    body = payload()
    assert handle_webhook(intake, body, signed(body, key="wrong", timestamp=NOW)) == (401, b"")
    assert handle_webhook(intake, body, {}) == (401, b"")


def test_an_oversized_body_is_stored_truncated_never_refused(
    intake: WebhookIntake, inbox: MemoryInbox
) -> None:
    body = payload(customer_id="u1", delivery_id="d1", content="x" * 3_000)
    assert handle_webhook(intake, body, signed(body, timestamp=NOW)) == (
        200,
        b'{"status":"stored","truncated":true}',
    )
    [stored] = inbox.due(10, now=NOW)
    assert stored.truncated and parse_event(stored.raw).delivery_id == "d1"


def test_the_streaming_handler_keeps_the_cap_and_verifies_every_byte(
    intake: WebhookIntake, inbox: MemoryInbox
) -> None:
    body = payload(customer_id="u1", delivery_id="d1", content="x" * 300_000)
    reads: list[int] = []

    def reader(stream: io.BytesIO) -> Callable[[int], bytes]:
        def read(size: int) -> bytes:
            reads.append(size)
            return stream.read(size)

        return read

    forged = body[:-10] + b"y" * 8 + body[-2:]
    assert (
        handle_webhook_stream(intake, reader(io.BytesIO(forged)), signed(body, timestamp=NOW))[0]
        == 401
    )
    assert handle_webhook_stream(intake, reader(io.BytesIO(body)), {}) == (401, b"")
    reads.clear()
    status, _ = handle_webhook_stream(intake, reader(io.BytesIO(body)), signed(body, timestamp=NOW))
    assert status == 200 and len(reads) > 1  # read in chunks, not whole
    [stored] = inbox.due(10, now=NOW)
    assert stored.truncated and parse_event(stored.raw).customer_id == "u1"


def test_unparseable_payloads_are_quarantined_and_acknowledged(
    intake: WebhookIntake, inbox: MemoryInbox
) -> None:
    for body in (b"<xml/>", b'{"metric":"sent"}'):
        assert handle_webhook(intake, body, signed(body, timestamp=NOW)) == (
            200,
            b'{"status":"quarantined"}',
        )
    assert [q.raw for q in inbox.list_quarantined()] == [b"<xml/>", b'{"metric":"sent"}']


def test_a_storage_failure_is_503(intake: WebhookIntake, inbox: MemoryInbox) -> None:
    inbox.close()  # a closed inbox cannot store: the same path as a locked or full disk
    body = payload()
    status, _ = handle_webhook(intake, body, signed(body, timestamp=NOW))
    assert status == 503


def test_importing_the_adapters_does_not_import_django_or_flask() -> None:
    code = (
        "import sys, cio_relay.webhooks.adapters\n"
        "print(sorted(m for m in ('django', 'flask') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.binary(max_size=400),
    timestamp=st.one_of(st.none(), st.text(max_size=12), st.just(str(NOW))),
    signature=st.one_of(
        st.none(), st.text(max_size=70), st.binary(min_size=32, max_size=32).map(bytes.hex)
    ),
    wrong_key=st.text(min_size=1, max_size=30).filter(lambda k: k != KEY),
)
def test_property_no_request_gets_a_2xx_without_a_valid_signature(
    body: bytes, timestamp: str | None, signature: str | None, wrong_key: str
) -> None:
    """Any body with random headers, or signed with another key, is refused and not stored."""
    inbox = MemoryInbox()
    intake = WebhookIntake(inbox, [KEY], clock=lambda: float(NOW))
    forged = signed(body, key=wrong_key, timestamp=NOW)
    attempts = [
        {"X-CIO-Timestamp": timestamp, "X-CIO-Signature": signature},
        forged,
        {**forged, "X-CIO-Timestamp": str(NOW + 1)},
    ]
    for headers in attempts:
        present = {k: v for k, v in headers.items() if v is not None}
        status, _ = handle_webhook(intake, body, present)
        assert status == 401
    assert inbox.counts() == InboxCounts(pending=0, done=0, parked=0, quarantined=0)
