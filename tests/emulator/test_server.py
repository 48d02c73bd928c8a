"""The emulator served over real 127.0.0.1 sockets: start, stop, fixture isolation, TLS."""

from __future__ import annotations

import socket
import ssl

import httpx

from cio_relay.emulator import EmulatorConfig, EmulatorServer

from .helpers import inspect, track_client


def test_server_listens_on_loopback_and_answers_an_identify(emulator: EmulatorServer) -> None:
    assert emulator.url.startswith("http://127.0.0.1:")
    with track_client(emulator) as client:
        response = client.put("/api/v1/customers/ada", json={"plan": "pro"})
    assert response.status_code == 200 and response.json() == {}
    person = inspect(emulator, "people/ada")
    assert person["attributes"] == {"plan": "pro"}


def test_fixture_state_is_fresh_for_each_test(emulator: EmulatorServer) -> None:
    assert inspect(emulator, "people") == {"people": [], "total": 0, "limit": 100, "offset": 0}
    assert emulator.state.stats.events_accepted == 0


def test_stop_closes_the_socket() -> None:
    server = EmulatorServer(EmulatorConfig()).start()
    port = server.port
    server.stop()
    server.stop()  # twice is fine
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_tls_emulator_serves_https_with_the_test_ca(
    tls_emulator: tuple[EmulatorServer, str],
) -> None:
    server, ca_bundle = tls_emulator
    assert server.url.startswith("https://127.0.0.1:")
    trust = ssl.create_default_context(cafile=ca_bundle)
    response = httpx.get(f"{server.url}/_emulator/stats", verify=trust, timeout=10)
    assert response.status_code == 200 and response.json()["events_accepted"] == 0


def test_secrets_stay_out_of_reprs() -> None:
    config = EmulatorConfig(
        track_api_key="tk-secret",
        app_api_key="ak-secret",
        webhook_url="http://127.0.0.1:9/x",
        webhook_signing_key="wk-secret",
    )
    server = EmulatorServer(config)
    try:
        for text in (repr(config), repr(server), repr(server.app)):
            assert "secret" not in text
    finally:
        server.stop()
