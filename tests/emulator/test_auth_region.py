"""Credentials and regions (customerio-api.md §1): Basic for Track, Bearer for the App API,
and what a call to the other region's host gets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cio_relay.emulator import EmulatorConfig, EmulatorServer

from .helpers import app_client, inspect, plain_client, track_client

EMAIL = {"to": "a@example.com", "identifiers": {"id": "u1"}, "transactional_message_id": 1}


@pytest.fixture(scope="module")
def eu_emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(region="eu")) as server:
        yield server


@pytest.mark.parametrize(
    "auth",
    [None, ("emulator-site", "wrong-key"), ("other-site", "emulator-track-key")],
    ids=["none", "wrong-key", "wrong-site"],
)
def test_track_without_the_right_basic_credentials_is_401(
    emulator: EmulatorServer, auth: tuple[str, str] | None
) -> None:
    with plain_client(emulator, auth=auth) as client:
        response = client.put("/api/v1/customers/u1", json={"a": 1})
    assert response.status_code == 401
    assert response.json() == {"meta": {"error": "Unauthorized request"}}
    assert inspect(emulator, "people")["total"] == 0


def test_track_accepts_a_differently_spelled_basic_header(emulator: EmulatorServer) -> None:
    import base64

    token = base64.b64encode(b"emulator-site:emulator-track-key").decode()
    with plain_client(emulator, headers={"Authorization": f"basic  {token}"}) as client:
        assert client.put("/api/v1/customers/u1", json={}).status_code == 200


@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong", "Basic ZW11bGF0b3ItYXBwLWtleTo="],
    ids=["none", "wrong", "basic"],
)
def test_app_api_without_the_bearer_key_is_401(
    emulator: EmulatorServer, header: str | None
) -> None:
    headers = {"Authorization": header} if header else {}
    with plain_client(emulator, headers=headers) as client:
        response = client.post("/v1/send/email", json=EMAIL)
    assert response.status_code == 401
    assert response.json() == {"errors": [{"detail": "Unauthorized", "status": "401"}]}
    assert inspect(emulator, "deliveries")["total"] == 0


def test_track_key_does_not_open_the_app_api(emulator: EmulatorServer) -> None:
    headers = {"Authorization": f"Bearer {emulator.config.track_api_key}"}
    with plain_client(emulator, headers=headers) as client:
        assert client.post("/v1/send/email", json=EMAIL).status_code == 401


def test_own_region_hosts_and_loopback_are_served(emulator: EmulatorServer) -> None:
    with track_client(emulator) as client:
        assert client.put("/api/v1/customers/a", json={}).status_code == 200
        on_us = client.put("/api/v1/customers/b", json={}, headers={"Host": "track.customer.io"})
        assert on_us.status_code == 200
    with app_client(emulator) as client:
        response = client.post("/v1/send/email", json=EMAIL, headers={"Host": "api.customer.io"})
        assert response.status_code == 200


def test_app_api_to_the_wrong_region_is_301_wrong_datacenter(emulator: EmulatorServer) -> None:
    with app_client(emulator) as client:
        response = client.post("/v1/send/email", json=EMAIL, headers={"Host": "api-eu.customer.io"})
    assert response.status_code == 301
    assert response.json() == {"errors": [{"detail": "wrong datacenter", "status": "301"}]}
    assert inspect(emulator, "deliveries")["total"] == 0


def test_us_account_on_the_eu_track_host_fails_with_401(emulator: EmulatorServer) -> None:
    with track_client(emulator) as client:
        response = client.put(
            "/api/v1/customers/u1", json={}, headers={"Host": "track-eu.customer.io"}
        )
    assert response.status_code == 401
    assert inspect(emulator, "people")["total"] == 0


def test_eu_account_on_the_us_track_host_is_redirected_to_the_eu_host(
    eu_emulator: EmulatorServer,
) -> None:
    with track_client(eu_emulator) as client:
        response = client.put(
            "/api/v1/customers/a%2Fb?x=1", json={}, headers={"Host": "track.customer.io:443"}
        )
    assert response.status_code == 307
    assert response.headers["location"] == "https://track-eu.customer.io/api/v1/customers/a%2Fb?x=1"


def test_eu_account_on_the_us_app_host_is_wrong_datacenter(eu_emulator: EmulatorServer) -> None:
    with app_client(eu_emulator) as client:
        response = client.post("/v1/send/email", json=EMAIL, headers={"Host": "api.customer.io"})
    assert response.status_code == 301


def test_the_redirect_keeps_method_and_body_when_followed(eu_emulator: EmulatorServer) -> None:
    # A second emulator plays the US front door; its redirects point at the EU emulator.
    front_door = EmulatorConfig(region="eu", eu_track_url=eu_emulator.url)
    with EmulatorServer(front_door) as us_host, track_client(us_host) as client:
        first = client.put(
            "/api/v1/customers/u1", json={"plan": "pro"}, headers={"Host": "track.customer.io"}
        )
        assert first.status_code == 307
        assert first.headers["location"] == f"{eu_emulator.url}/api/v1/customers/u1"
        assert inspect(us_host, "people")["total"] == 0
        again = client.put(first.headers["location"], json={"plan": "pro"})
    assert again.status_code == 200
    assert inspect(eu_emulator, "people/u1")["attributes"] == {"plan": "pro"}


def test_account_region_endpoint_names_the_eu(eu_emulator: EmulatorServer) -> None:
    with track_client(eu_emulator) as client:
        body = client.get("/api/v1/accounts/region").json()
    assert body["region"] == "eu" and body["url"] == "https://track-eu.customer.io"
