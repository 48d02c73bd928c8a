"""Fault injection through ``/_emulator/faults``: errors, latency, drops, rate limit, reset."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from ulid import ULID

from cio_relay.emulator import EmulatorServer

from .helpers import app_client, inspect, plain_client, track_client


def add_fault(server: EmulatorServer, **rule: Any) -> dict[str, Any]:
    with plain_client(server) as client:
        response = client.post("/_emulator/faults", json=rule)
    assert response.status_code == 200, response.text
    return dict(response.json()["fault"])


def identify_status(client: httpx.Client, person: str = "u1") -> int:
    return client.put(f"/api/v1/customers/{person}", json={}).status_code


def test_error_rate_one_with_count_fails_exactly_the_next_n(emulator: EmulatorServer) -> None:
    add_fault(emulator, error_rate=1.0, status_codes=[500, 503], count=3, retry_after=7)
    with track_client(emulator) as client:
        answers = [client.put("/api/v1/customers/u1", json={}) for _ in range(4)]
    assert [a.status_code for a in answers] == [500, 503, 500, 200]
    assert answers[1].headers["retry-after"] == "7"
    assert "retry-after" not in answers[0].headers
    assert answers[0].json() == {"meta": {"error": "injected fault", "errors": ["injected fault"]}}
    assert inspect(emulator, "faults")["faults"] == []  # the rule retired after 3
    stats = inspect(emulator, "stats")
    assert stats["injected_errors"] == 3
    assert stats["requests"]["PUT /api/v1/customers/{identifier}"] == {"200": 1, "500": 2, "503": 1}
    assert stats["people"] == 1  # failed requests were not applied


def test_app_api_faults_use_the_app_error_shape(emulator: EmulatorServer) -> None:
    add_fault(emulator, path="/v1/send", error_rate=1.0, status_codes=[502], count=1)
    body = {"to": "a@x.test", "identifiers": {"id": "u1"}, "transactional_message_id": 1}
    with app_client(emulator) as client:
        response = client.post("/v1/send/email", json=body)
    assert response.status_code == 502
    assert response.json()["errors"] == [{"detail": "injected fault", "status": "502"}]


def test_path_prefix_limits_a_fault(emulator: EmulatorServer) -> None:
    add_fault(emulator, path="/api/v2/batch", error_rate=1.0)
    batch = {"batch": [{"type": "person", "action": "delete", "identifiers": {"id": "x"}}]}
    with track_client(emulator) as client:
        assert identify_status(client) == 200
        assert client.post("/api/v2/batch", json=batch).status_code == 503
    assert httpx.get(f"{emulator.url}/_emulator/stats").status_code == 200  # never faulted


def test_seeded_fractional_error_rate_repeats_exactly(emulator: EmulatorServer) -> None:
    def run() -> list[int]:
        add_fault(emulator, error_rate=0.5, seed=7)
        with track_client(emulator) as client:
            statuses = [identify_status(client) for _ in range(20)]
        httpx.delete(f"{emulator.url}/_emulator/faults").raise_for_status()
        return statuses

    first, second = run(), run()
    assert first == second
    assert set(first) == {200, 503}


def test_latency_delays_the_answer(emulator: EmulatorServer) -> None:
    add_fault(emulator, latency_ms=150, count=1)
    with track_client(emulator) as client:
        started = time.perf_counter()
        assert identify_status(client) == 200
        delayed = time.perf_counter() - started
        started = time.perf_counter()
        assert identify_status(client) == 200
        undelayed = time.perf_counter() - started
    assert delayed >= 0.15 > undelayed
    assert inspect(emulator, "stats")["delayed_requests"] == 1


def test_drop_loses_the_connection_after_the_request_was_read(emulator: EmulatorServer) -> None:
    add_fault(emulator, drop_rate=1.0, count=1)
    with track_client(emulator) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.put("/api/v1/customers/u1", json={"plan": "pro"})
        assert identify_status(client, "u2") == 200  # the next request is served normally
    stats = inspect(emulator, "stats")
    assert stats["dropped_connections"] == 1
    assert stats["requests"]["PUT /api/v1/customers/{identifier}"] == {"0": 1, "200": 1}
    assert [p["id"] for p in inspect(emulator, "people")["people"]] == ["u2"]  # not applied


def test_drop_after_processing_applies_the_request_then_loses_the_answer(
    emulator: EmulatorServer,
) -> None:
    add_fault(emulator, drop_rate=1.0, drop_after_processing=True, count=1)
    event = {"name": "paid", "id": str(ULID())}
    with track_client(emulator) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.post("/api/v1/customers/u1/events", json=event)
        # The client cannot know; sending again is harmless thanks to the event id.
        assert client.post("/api/v1/customers/u1/events", json=event).status_code == 200
    stats = inspect(emulator, "stats")
    assert (stats["events_accepted"], stats["duplicate_event_ids"]) == (1, 1)


def test_rate_limit_answers_429_with_retry_after(emulator: EmulatorServer) -> None:
    # 0.01 rps: one request passes, the next token is 100 s away.
    add_fault(emulator, rate_limit={"rps": 0.01, "retry_after": 2})
    with track_client(emulator) as client:
        answers = [client.put("/api/v1/customers/u1", json={}) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 429, 429]
    assert answers[1].headers["retry-after"] == "2"
    assert answers[1].json() == {
        "meta": {"error": "rate limit exceeded", "errors": ["rate limit exceeded"]}
    }
    assert inspect(emulator, "stats")["rate_limited"] == 2


def test_delete_faults_and_reset_clear_every_rule(emulator: EmulatorServer) -> None:
    add_fault(emulator, error_rate=1.0)
    add_fault(emulator, latency_ms=5)
    assert len(inspect(emulator, "faults")["faults"]) == 2
    assert httpx.delete(f"{emulator.url}/_emulator/faults").json() == {"removed": 2}
    with track_client(emulator) as client:
        assert identify_status(client) == 200
    add_fault(emulator, error_rate=1.0)
    assert httpx.post(f"{emulator.url}/_emulator/reset").status_code == 200
    assert inspect(emulator, "faults")["faults"] == []
    assert inspect(emulator, "people")["total"] == 0
    assert inspect(emulator, "stats")["requests_total"] == 0


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"error_rate": 1.5}, "error_rate must be a number from 0 to 1, not 1.5"),
        ({"status_codes": [200]}, "status_codes must be a non-empty list of 4xx/5xx status codes"),
        ({"rate_limit": {"rps": 0}}, "rate_limit.rps must be a positive number"),
        ({"count": 0}, "count must be a positive integer, not 0"),
        ({"latency_ms": -1}, "latency_ms must not be negative, not -1"),
        ({"path": "api"}, "path must be a path prefix starting with '/'"),
        ({"colour": "red"}, "unknown fault fields: colour"),
    ],
)
def test_invalid_fault_rules_are_refused(
    emulator: EmulatorServer, rule: dict[str, Any], message: str
) -> None:
    response = httpx.post(f"{emulator.url}/_emulator/faults", json=rule)
    assert response.status_code == 400
    assert response.json() == {"error": message}
    assert inspect(emulator, "faults")["faults"] == []
