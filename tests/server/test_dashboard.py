"""The dashboard over real HTTP: login, sessions, CSRF, read-only mode, paging and actions."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest

from cio_relay import operations as ops
from cio_relay.config import Settings
from cio_relay.operations import Operation
from cio_relay.outbox.base import DeadReason, Outbox

Served = Callable[..., AbstractContextManager[str]]


def _dead(
    outbox: Outbox, operations: list[Operation], reason: DeadReason = DeadReason.PERMANENT
) -> None:
    outbox.enqueue(operations)
    wanted = {op.op_id for op in operations}
    while wanted:
        leases = [lease for lease in outbox.lease(1000, 60) if lease.op.op_id in wanted]
        for lease in leases:
            outbox.dead_letter(lease, reason, f"400: refused {lease.op.kind.value}")
            wanted.discard(lease.op.op_id)


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


@pytest.fixture
def browser_like(base_url: str, api_key: str) -> Iterator[httpx.Client]:
    """A client holding a session cookie from the login form, like a browser."""
    with httpx.Client(base_url=base_url) as http:
        response = http.post("/dashboard/login", data={"key": api_key, "next": "/dashboard"})
        assert response.status_code == 303
        yield http


def test_login_sets_an_httponly_strict_cookie_that_is_not_the_key(
    base_url: str, api_key: str
) -> None:
    with httpx.Client(base_url=base_url) as http:
        wrong = http.post("/dashboard/login", data={"key": "nope"})
        assert wrong.status_code == 401 and "That key is not valid" in wrong.text
        response = http.post(
            "/dashboard/login", data={"key": api_key, "next": "/dashboard/dead-letters"}
        )
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/dead-letters"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/dashboard" in cookie
    assert api_key not in cookie


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/x", "/metrics", "/dashboard\\@evil"]
)
def test_login_never_redirects_off_the_dashboard(base_url: str, api_key: str, target: str) -> None:
    with httpx.Client(base_url=base_url) as http:
        response = http.post("/dashboard/login", data={"key": api_key, "next": target})
    assert response.headers["location"] == "/dashboard"


def test_pages_send_security_headers_and_never_the_key(
    browser_like: httpx.Client, api_key: str
) -> None:
    for path in ("/dashboard", "/dashboard/dead-letters", "/dashboard/webhooks"):
        response = browser_like.get(path)
        assert response.status_code == 200
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-store"
        assert api_key not in response.text


def test_actions_need_the_session_csrf_token(browser_like: httpx.Client, outbox: Outbox) -> None:
    op = ops.track("u-1", "paid")
    _dead(outbox, [op])
    forged = browser_like.post("/dashboard/dead-letters/replay", data={"op_id": op.op_id})
    assert forged.status_code == 403
    assert outbox.count_dead() == 1
    token = _csrf(browser_like.get("/dashboard/dead-letters").text)
    done = browser_like.post(
        "/dashboard/dead-letters/replay", data={"op_id": op.op_id, "csrf": token}
    )
    assert done.status_code == 303
    assert "done=replayed" in done.headers["location"] and "count=1" in done.headers["location"]
    assert outbox.count_dead() == 0
    assert outbox.depth().ready == 1


def test_bearer_header_needs_no_csrf_token(
    client: httpx.Client, auth: dict[str, str], outbox: Outbox
) -> None:
    op = ops.identify("u-1", {})
    _dead(outbox, [op])
    response = client.post("/dashboard/dead-letters/purge", data={"op_id": op.op_id}, headers=auth)
    assert response.status_code == 303
    assert outbox.count_dead() == 0
    assert outbox.depth().pending == 0


def test_logout_ends_the_session(browser_like: httpx.Client) -> None:
    token = _csrf(browser_like.get("/dashboard").text)
    assert browser_like.post("/dashboard/logout", data={"csrf": token}).status_code == 303
    assert browser_like.get("/dashboard").status_code == 303


def test_dead_letters_are_paged_and_counted(browser_like: httpx.Client, outbox: Outbox) -> None:
    _dead(outbox, [ops.track(f"p-{i}", "e") for i in range(120)])
    first = browser_like.get("/dashboard/dead-letters").text
    assert first.count("data-op-id=") == 50
    assert "1\N{EN DASH}50 of 120" in first
    last = browser_like.get("/dashboard/dead-letters?offset=100&limit=50").text
    assert last.count("data-op-id=") == 20
    assert 'id="next"' not in last and 'id="prev"' in last
    listed = set(
        re.findall(
            r'data-op-id="(\w+)"',
            first + browser_like.get("/dashboard/dead-letters?offset=50").text + last,
        )
    )
    assert len(listed) == 120


def test_filters_and_bulk_actions(browser_like: httpx.Client, outbox: Outbox) -> None:
    _dead(outbox, [ops.track(f"p-{i}", "e") for i in range(3)], DeadReason.PERMANENT)
    _dead(
        outbox,
        [ops.send_email(to="a@example.com", transactional_message_id=1)],
        DeadReason.AMBIGUOUS,
    )
    page = browser_like.get("/dashboard/dead-letters?reason=ambiguous")
    assert page.text.count("data-op-id=") == 1
    token = _csrf(page.text)
    unconfirmed = browser_like.post("/dashboard/dead-letters/replay", data={"csrf": token})
    assert unconfirmed.status_code == 422
    purged = browser_like.post(
        "/dashboard/dead-letters/purge", data={"csrf": token, "reason": "permanent", "all": "1"}
    )
    assert "count=3" in purged.headers["location"]
    assert outbox.count_dead() == 1
    assert (
        browser_like.post(
            "/dashboard/dead-letters/replay", data={"csrf": token, "all": "1"}
        ).status_code
        == 303
    )
    assert outbox.count_dead() == 0


@pytest.mark.parametrize(
    "query",
    [
        "reason=nope",
        "kind=drop_tables",
        "older_than=abc",
        "older_than=-1",
        "older_than=nan",
        "offset=x",
        "limit=1e9",
        # issue 11: isdigit() then int() answered 500 for these
        "limit=%C2%B2",
        "offset=%C2%B2",
        "offset=" + "1" * 5000,
        "limit=%D9%A1%D9%A2",  # Arabic-Indic 12
        "done=replayed&count=%C2%B2",
        "done=purged&count=" + "9" * 5000,
    ],
)
def test_bad_filters_are_422_not_500(browser_like: httpx.Client, query: str) -> None:
    response = browser_like.get(f"/dashboard/dead-letters?{query}")
    assert response.status_code == 422
    assert 'id="problem"' in response.text


@pytest.mark.parametrize("offset", ["%C2%B2", "1" * 5000, "-1"])
def test_a_bad_webhooks_offset_is_422_not_500(browser_like: httpx.Client, offset: str) -> None:
    response = browser_like.get(f"/dashboard/webhooks?offset={offset}")
    assert response.status_code == 422
    assert "offset must be a whole number" in response.text


def test_read_only_mode_shows_no_buttons_and_refuses_actions(
    served: Served, settings: Settings, outbox: Outbox, api_key: str, auth: dict[str, str]
) -> None:
    op = ops.track("u-1", "paid")
    _dead(outbox, [op])
    read_only = settings.model_copy(update={"dashboard_read_only": True})
    with served(settings=read_only) as url, httpx.Client(base_url=url, headers=auth) as http:
        page = http.get("/dashboard/dead-letters").text
        refused = http.post("/dashboard/dead-letters/replay", data={"op_id": op.op_id})
    assert "read-only" in page
    assert "Replay" not in page and "Purge" not in page
    assert refused.status_code == 403
    assert outbox.count_dead() == 1


def test_overview_shows_outbox_counts(browser_like: httpx.Client, outbox: Outbox) -> None:
    _dead(outbox, [ops.identify("d-1", {})])
    outbox.enqueue([ops.track(f"p-{i}", "e") for i in range(7)])
    html = browser_like.get("/dashboard").text
    assert re.search(r'id="depth-ready">7<', html)
    assert re.search(r'id="depth-dead">1<', html)
    assert "<svg" in html  # the throughput chart
    assert "not configured in this process" in html  # no webhook inbox, no lake here


# --- sessions: odd cookies, throttled logins, revocation on logout, the Secure flag ----------


def _session_cookie(response: httpx.Response) -> str:
    match = re.search(r"cio_relay_session=([^;]+)", response.headers["set-cookie"])
    assert match, "no session cookie"
    return match.group(1)


@pytest.mark.parametrize(
    "cookie",
    [
        b"1" * 5000 + b".abc",
        b"1" * 5000 + b".0123456789abcdef.abc",
        b"\xb2.abc",
        b"\xb2.0123456789abcdef.abc",
        b"\xc2\xb2.0123456789abcdef.abc",
        b"1" * 19 + b".0123456789abcdef." + b"0" * 64,
    ],
)
def test_an_odd_session_cookie_is_no_session_not_a_500(base_url: str, cookie: bytes) -> None:
    with httpx.Client(base_url=base_url) as http:
        for path in ("/dashboard", "/dashboard/dead-letters", "/dashboard/webhooks"):
            response = http.get(path, headers={"Cookie": b"cio_relay_session=" + cookie})
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/dashboard/login")


def test_failed_logins_are_throttled_with_retry_after(base_url: str, api_key: str) -> None:
    with httpx.Client(base_url=base_url) as http:
        for _ in range(10):
            assert http.post("/dashboard/login", data={"key": "wrong"}).status_code == 401
        throttled = http.post("/dashboard/login", data={"key": "wrong"})
        assert throttled.status_code == 429
        assert 0 < int(throttled.headers["retry-after"]) <= 600
        assert "Too many failed logins" in throttled.text
        # While throttled even the right key is refused: a guess then would tell nothing.
        right = http.post("/dashboard/login", data={"key": api_key})
        assert right.status_code == 429 and "set-cookie" not in right.headers
        # Scripts with the key in a header are never throttled.
        page = http.get("/dashboard", headers={"Authorization": f"Bearer {api_key}"})
        assert page.status_code == 200


def test_logout_revokes_the_session_on_the_server(
    served: Served, api_key: str, settings: Settings
) -> None:
    with served() as url, httpx.Client(base_url=url) as first, httpx.Client(base_url=url) as other:
        cookie = _session_cookie(first.post("/dashboard/login", data={"key": api_key}))
        other.post("/dashboard/login", data={"key": api_key})
        token = _csrf(first.get("/dashboard").text)
        assert first.post("/dashboard/logout", data={"csrf": token}).status_code == 303
        with httpx.Client(base_url=url, cookies={"cio_relay_session": cookie}) as stolen:
            refused = stolen.get("/dashboard")
        assert refused.status_code == 303  # a copy of the cookie no longer works
        assert refused.headers["location"].startswith("/dashboard/login")
        assert other.get("/dashboard").status_code == 200  # another session is not affected
    assert (settings.data_dir / "dashboard-sessions.db").exists()
    with (
        served() as url,
        httpx.Client(base_url=url, cookies={"cio_relay_session": cookie}) as again,
    ):
        assert again.get("/dashboard").status_code == 303  # still revoked after a restart


def test_a_logout_that_cannot_be_recorded_says_so(
    served: Served, api_key: str, settings: Settings, tmp_path: Path
) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    unwritable = settings.model_copy(update={"data_dir": blocked})
    with served(settings=unwritable) as url, httpx.Client(base_url=url) as http:
        http.post("/dashboard/login", data={"key": api_key})
        token = _csrf(http.get("/dashboard").text)
        response = http.post("/dashboard/logout", data={"csrf": token})
    assert response.status_code == 503
    assert "could not be recorded" in response.text


@pytest.mark.parametrize(
    ("update", "headers", "secure"),
    [
        ({}, {}, False),
        ({"secure_cookies": True}, {}, True),
        ({"env": "production"}, {}, True),
        ({"env": "production", "secure_cookies": False}, {}, False),
        # uvicorn believes X-Forwarded-Proto from a trusted proxy (127.0.0.1 by default)
        ({}, {"X-Forwarded-Proto": "https"}, True),
    ],
)
def test_the_session_cookie_is_secure_over_https_or_when_told(
    served: Served,
    api_key: str,
    settings: Settings,
    update: dict[str, object],
    headers: dict[str, str],
    secure: bool,
) -> None:
    chosen = settings.model_copy(update=update)
    with served(settings=chosen) as url, httpx.Client(base_url=url) as http:
        response = http.post("/dashboard/login", data={"key": api_key}, headers=headers)
    assert response.status_code == 303
    assert ("; secure" in response.headers["set-cookie"].lower()) is secure
