"""The dashboard under arbitrary input: never a 5xx, never reflected markup (issue 11).

Every page and form of ``/dashboard``, logged in (a real session cookie, with the form's CSRF
token or without) and not, gets query strings, cookies and form fields made by hypothesis: free
text, percent-escapes of arbitrary bytes, the numbers that once answered 500 ("²", 5,000
digits) and canaries of markup. Properties: the status is below 500, and no canary comes back
unescaped (autoescaping turns ``<`` and quotes into entities, so a canary that made it through
verbatim would be markup the page did not write). The outbox and the webhook inbox hold rows
whose data is markup too, so the pages render rows while being fuzzed.

The app is served by uvicorn on 127.0.0.1 (real sockets and lifespan, as in the other server
tests), a few ms a request; ``max_examples`` keeps the file near 15 s on two cores.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote_from_bytes, urlencode

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from cio_relay import operations as ops
from cio_relay.config import Settings
from cio_relay.outbox.base import DeadReason
from cio_relay.outbox.factory import open_outbox
from cio_relay.server import create_app
from cio_relay.webhooks.signature import signature_headers
from tests.server.conftest import serve

API_KEY = "fuzz-" + "0123456789abcdef" * 2
SIGNING_KEY = "whsec-fuzz-0123456789"

#: Markup that must never come back verbatim, and what it would look like if it did.
CANARIES = (
    "<i id=cf>",
    '"cf-attr=x ',
    "'cf-attr=x ",
    "</textarea><i id=cf>",
    "<script>cf()</script>",
    "javascript:cf()//<i id=cf>",
)
FORBIDDEN = re.compile(r"<i id=cf|[\"']cf-attr=|<script>cf\(")

#: Values that once answered 500, or that look like numbers to a lax parser.
ODD_NUMBERS = (
    "²",
    "١٢",
    "1" * 5000,
    "9" * 19,
    "-1",
    "1e9",
    "nan",
    "0x10",
    " 1",
    "",
)
PARAMETERS = (
    "limit",
    "offset",
    "kind",
    "reason",
    "older_than",
    "done",
    "count",
    "next",
    "csrf",
    "op_id",
    "all",
    "key",
)
GET_PAGES = ("/dashboard", "/dashboard/dead-letters", "/dashboard/webhooks", "/dashboard/login")
POST_FORMS = (
    "/dashboard/dead-letters/replay",
    "/dashboard/dead-letters/purge",
    "/dashboard/login",
    "/dashboard/logout",
)

values = st.one_of(
    st.text(max_size=30),
    st.sampled_from(CANARIES + ODD_NUMBERS + ("replayed", "purged", "track", "permanent", "1")),
    st.builds(lambda text, canary: text + canary, st.text(max_size=10), st.sampled_from(CANARIES)),
    st.sampled_from(("/dashboard", "/dashboard/webhooks")).map(lambda p: p + CANARIES[0]),
)
names = st.one_of(st.sampled_from(PARAMETERS), st.text(max_size=12))
pairs = st.lists(st.tuples(names, values), max_size=6)
raw_escapes = st.binary(max_size=20).map(lambda b: quote_from_bytes(b, safe=""))
cookie_values = st.one_of(
    values,
    st.sampled_from(ODD_NUMBERS).map(lambda n: f"{n}.0123456789abcdef.{'0' * 64}"),
    st.sampled_from(ODD_NUMBERS).map(lambda n: f"{n}.abc"),
)


@dataclass(frozen=True)
class Dashboard:
    client: httpx.Client
    session: str  # the value of a live session cookie
    csrf: str  # that session's CSRF token


def _seed(outbox_url: str) -> None:
    outbox = open_outbox(outbox_url)
    try:
        data = {"note": CANARIES[0], "bio": CANARIES[4]}
        outbox.enqueue([ops.identify(f"user{canary}", data) for canary in CANARIES])
        for lease in outbox.lease(100, 60):
            outbox.dead_letter(lease, DeadReason.PERMANENT, f"400 {CANARIES[3]}")
    finally:
        outbox.close()


def _webhook(client: httpx.Client, number: int) -> None:
    body = orjson.dumps(
        {
            "event_id": f"01HZFUZZ{number:018d}",
            "object_type": "email",
            "metric": "delivered",
            "timestamp": int(time.time()),
            "data": {
                "delivery_id": f"d{CANARIES[0]}",
                "recipient": f"a{CANARIES[1]}@example.com",
                "subject": CANARIES[4],
                "campaign_id": CANARIES[5],
            },
        }
    )
    answer = client.post(
        "/webhooks/customerio", content=body, headers=signature_headers(SIGNING_KEY, body)
    )
    assert answer.status_code == 200


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    data = tmp_path_factory.mktemp("dashboard-fuzz")
    outbox_url = f"sqlite:///{data / 'outbox.db'}"
    _seed(outbox_url)
    app_settings = Settings(
        api_keys=API_KEY,
        data_dir=data,
        outbox=outbox_url,
        webhook_signing_keys=[SecretStr(SIGNING_KEY)],
        lake=str(data / "lake"),
    )
    app = create_app(app_settings, run_workers=False, webhooks=True)
    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        for number in range(3):
            _webhook(client, number)
        login = client.post("/dashboard/login", data={"key": API_KEY})
        assert login.status_code == 303
        session = client.cookies["cio_relay_session"]
        page = client.get("/dashboard/dead-letters").text
        match = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
        assert match and CANARIES[0] not in page and "user&lt;i id=cf&gt;" in page
        client.cookies.clear()  # each example sends the cookies it chose
        yield Dashboard(client, session, match.group(1))


_NOT_IN_A_HEADER = dict.fromkeys([*range(0x20), 0x7F])  # HTTP itself refuses these


def _cookie_header(chosen: list[tuple[str, str]], session: str | None) -> bytes:
    cookies = ([("cio_relay_session", session)] if session else []) + chosen
    text = "; ".join(f"{name}={value}" for name, value in cookies)
    return text.translate(_NOT_IN_A_HEADER).strip().encode("utf-8")


def _check(response_status: int, body: str, where: str) -> None:
    assert response_status < 500, where
    found = FORBIDDEN.search(body)
    assert found is None, (where, body[max(0, found.start() - 80) : found.end() + 80])


_FUZZ = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@_FUZZ
@given(
    page=st.sampled_from(GET_PAGES),
    query=pairs,
    raw=st.lists(st.tuples(raw_escapes, raw_escapes), max_size=3),
    cookies=st.lists(
        st.tuples(st.sampled_from(["cio_relay_session", "x"]), cookie_values), max_size=3
    ),
    logged_in=st.booleans(),
)
def test_every_page_with_any_query_and_cookies(
    dashboard: Dashboard,
    page: str,
    query: list[tuple[str, str]],
    raw: list[tuple[str, str]],
    cookies: list[tuple[str, str]],
    logged_in: bool,
) -> None:
    parts = [urlencode(query)] + [f"{name}={value}" for name, value in raw]
    url = page + "?" + "&".join(part for part in parts if part)
    cookie = _cookie_header(cookies, dashboard.session if logged_in else None)
    response = dashboard.client.get(url, headers={"Cookie": cookie} if cookie else {})
    _check(response.status_code, response.text, url)


@_FUZZ
@given(
    form_path=st.sampled_from(POST_FORMS),
    fields=pairs,
    raw=st.lists(st.tuples(raw_escapes, raw_escapes), max_size=3),
    cookies=st.lists(
        st.tuples(st.sampled_from(["cio_relay_session", "x"]), cookie_values), max_size=2
    ),
    logged_in=st.booleans(),
    with_csrf=st.booleans(),
    bearer=st.sampled_from([None, API_KEY, "wrong", CANARIES[0]]),
)
def test_every_form_with_any_fields(
    dashboard: Dashboard,
    form_path: str,
    fields: list[tuple[str, str]],
    raw: list[tuple[str, str]],
    cookies: list[tuple[str, str]],
    logged_in: bool,
    with_csrf: bool,
    bearer: str | None,
) -> None:
    if with_csrf and form_path != "/dashboard/logout":  # a logout would end the shared session
        fields = [("csrf", dashboard.csrf), *fields]
    body = "&".join([urlencode(fields)] + [f"{name}={value}" for name, value in raw])
    headers: dict[str, str | bytes] = {"Content-Type": "application/x-www-form-urlencoded"}
    cookie = _cookie_header(cookies, dashboard.session if logged_in else None)
    if cookie:
        headers["Cookie"] = cookie
    if bearer is not None and form_path != "/dashboard/logout":
        headers["Authorization"] = f"Bearer {bearer}"
    response = dashboard.client.post(form_path, content=body.encode(), headers=headers)
    _check(response.status_code, response.text, form_path)
    assert "\r" not in response.headers.get("location", "")
    assert "\n" not in response.headers.get("location", "")


@settings(max_examples=60, deadline=None)
@given(
    form_path=st.sampled_from(POST_FORMS),
    body=st.binary(max_size=300),
    content_type=st.sampled_from(
        [None, "application/x-www-form-urlencoded", "multipart/form-data", "text/plain; charset=x"]
    ),
)
def test_every_form_with_any_body_bytes(
    dashboard: Dashboard, form_path: str, body: bytes, content_type: str | None
) -> None:
    headers = {"Cookie": f"cio_relay_session={dashboard.session}"}
    if content_type:
        headers["Content-Type"] = content_type
    if form_path == "/dashboard/logout":
        body = body.replace(dashboard.csrf.encode(), b"")
    response = dashboard.client.post(form_path, content=body, headers=headers)
    _check(response.status_code, response.text, form_path)


def test_the_shared_session_survived_the_fuzzing(dashboard: Dashboard) -> None:
    # Guards the fuzzing itself: had a logout ended the session, the "logged in" examples
    # would have tested the login redirect only.
    page = dashboard.client.get(
        "/dashboard", headers={"Cookie": f"cio_relay_session={dashboard.session}"}
    )
    assert page.status_code == 200
