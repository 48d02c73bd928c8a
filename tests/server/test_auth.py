"""Auth on every route that is not public, keys kept as digests, sessions and CSRF tokens."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from cio_relay.server import PUBLIC_PATHS
from cio_relay.server.auth import SESSION_SECONDS, ApiKeys, Principal
from cio_relay.server.ingest import INGEST_ROUTES, MOUNT_PATH

_SAMPLE_PARAM = re.compile(r"\{[^}]+\}")


def _routes(app: Starlette) -> list[tuple[str, str]]:
    pairs = []
    for route in app.routes:
        if isinstance(route, Mount) and route.path == MOUNT_PATH:  # the ingestion API
            pairs += [(method, _SAMPLE_PARAM.sub("1", path)) for method, path, *_ in INGEST_ROUTES]
            continue
        assert isinstance(route, Route), f"unexpected route type {route!r}"
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                pairs.append((method, _SAMPLE_PARAM.sub("1", route.path)))
    return pairs


def test_every_non_public_route_refuses_a_request_without_credentials(
    make_app: Callable[..., Starlette], base_url: str
) -> None:
    app = make_app()
    walked = _routes(app)
    assert len(walked) >= 20  # the API, health, metrics, dashboard pages and actions
    refused = []
    with httpx.Client(base_url=base_url) as http:
        for method, path in walked:
            if path in PUBLIC_PATHS:
                continue
            response = http.request(method, path, json={"attributes": {}})
            login_redirect = response.status_code == 303 and response.headers[
                "location"
            ].startswith("/dashboard/login")
            assert response.status_code == 401 or login_redirect, (method, path, response)
            refused.append(path)
    assert "/metrics" in refused and "/dashboard/dead-letters/replay" in refused


def test_the_same_routes_with_a_key_are_not_refused(
    make_app: Callable[..., Starlette], base_url: str, auth: dict[str, str]
) -> None:
    with httpx.Client(base_url=base_url, headers=auth) as http:
        for method, path in _routes(make_app()):
            if path in PUBLIC_PATHS:
                continue
            response = http.request(method, path, json={"attributes": {}})
            to_login = response.headers.get("location", "").startswith("/dashboard/login")
            assert response.status_code != 401, (method, path)
            assert not to_login or path == "/dashboard/logout", (method, path)


def test_keys_are_kept_as_digests_and_compared_against_every_one() -> None:
    keys = ApiKeys(["first-key-abcdef", "second-key-abcdef"])
    assert "first-key" not in repr(keys) and "first-key" not in str(vars(keys))
    first = keys.verify("first-key-abcdef")
    second = keys.verify("second-key-abcdef")
    assert first is not None and second is not None and first.scope != second.scope
    assert keys.verify("first-key-abcdeg") is None
    assert keys.from_authorization("Bearer second-key-abcdef") == second
    assert keys.from_authorization("bearer  second-key-abcdef ") == second
    for header in (None, "", "Bearer", "Basic second-key-abcdef", "second-key-abcdef"):
        assert keys.from_authorization(header) is None


def test_session_cookie_is_an_hmac_that_expires_and_dies_with_its_key() -> None:
    keys = ApiKeys(["the-key-abcdef12"])
    principal = keys.verify("the-key-abcdef12")
    assert principal is not None
    cookie = keys.issue_session(principal, now=1_000_000)
    assert "the-key" not in cookie
    issued, nonce, signature = cookie.split(".")
    expected = Principal(principal.digest, 1_000_000, nonce)
    assert keys.from_session(cookie, now=1_000_100) == expected
    assert keys.from_session(cookie, now=1_000_000 + SESSION_SECONDS + 1) is None
    assert ApiKeys(["another-key-1234"]).from_session(cookie, now=1_000_100) is None
    assert keys.from_session(f"{int(issued) + 1}.{nonce}.{signature}", now=1_000_100) is None
    assert keys.from_session(f"{issued}.{nonce}0.{signature}", now=1_000_100) is None
    assert keys.from_session(f"{issued}.{signature}", now=1_000_100) is None
    for junk in ("", ".", "..", "abc.def", "1.", "1000000.é", "1000000.a.é", "1.2.3.4"):
        assert keys.from_session(junk, now=1_000_100) is None


def test_two_logins_in_the_same_second_are_two_sessions() -> None:
    keys = ApiKeys(["the-key-abcdef12"])
    principal = keys.verify("the-key-abcdef12")
    assert principal is not None
    first = keys.from_session(keys.issue_session(principal, now=1_000), now=1_000)
    second = keys.from_session(keys.issue_session(principal, now=1_000), now=1_000)
    assert first is not None and second is not None and first != second
    assert keys.session_id(first) != keys.session_id(second)
    assert keys.csrf_token(first) != keys.csrf_token(second)


def test_csrf_token_belongs_to_the_session() -> None:
    keys = ApiKeys(["the-key-abcdef12"])
    principal = keys.verify("the-key-abcdef12")
    assert principal is not None
    session = keys.from_session(keys.issue_session(principal, now=1_000), now=1_000)
    later = keys.from_session(keys.issue_session(principal, now=2_000), now=2_000)
    assert session is not None and later is not None
    token = keys.csrf_token(session)
    assert keys.check_csrf(session, token)
    assert not keys.check_csrf(later, token)
    assert not keys.check_csrf(session, "")
    assert not keys.check_csrf(session, "ü")
    assert keys.check_csrf(principal, None)  # a bearer header needs no token


@pytest.mark.parametrize("metrics_public", [False, True])
def test_metrics_needs_a_key_unless_made_public(
    served: Callable[..., Any], settings: Any, metrics_public: bool
) -> None:
    chosen = settings.model_copy(update={"metrics_public": metrics_public})
    with served(settings=chosen) as url, httpx.Client(base_url=url) as http:
        response = http.get("/metrics")
    assert response.status_code == (200 if metrics_public else 401)


@pytest.mark.parametrize(
    "issued",
    [
        "1" * 5000,
        "\xb2",
        "\u00b9\u00b3",
        "١٢",
        "1_000",
        "+1000",
        " 1000",
        "-1",
        "1" * 19,
        "0x10",
        "1e3",
    ],
)
def test_a_session_cookie_with_an_odd_issue_time_is_no_session(issued: str) -> None:
    # Regression (issue 11): isdigit() then int() raised on "²" and past 4,300 digits (a 500).
    keys = ApiKeys(["the-key-abcdef12"])
    assert keys.from_session(f"{issued}.{'a' * 16}.{'0' * 64}", now=1_000_100) is None


def test_a_session_id_names_one_session_and_is_not_its_cookie() -> None:
    keys = ApiKeys(["the-key-abcdef12"])
    principal = keys.verify("the-key-abcdef12")
    assert principal is not None
    first_cookie = keys.issue_session(principal, now=1_000)
    first = keys.from_session(first_cookie, now=1_000)
    second = keys.from_session(keys.issue_session(principal, now=1_001), now=1_001)
    assert first is not None and second is not None
    assert keys.session_id(first) != keys.session_id(second)
    again = keys.from_session(first_cookie, now=1_001)
    assert again is not None and keys.session_id(again) == keys.session_id(first)
    assert first_cookie.split(".")[2] not in keys.session_id(first)
    with pytest.raises(ValueError, match="no session"):
        keys.session_id(principal)
