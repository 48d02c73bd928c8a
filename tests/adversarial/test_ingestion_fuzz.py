"""Every ingestion route under arbitrary input (issue 11, Build 4).

The real app, in process, over a real SQLite outbox and idempotency store, is called as an ASGI
server calls it (``raw_path`` bytes, ``path`` decoded as uvicorn decodes it, headers as bytes,
the body in one to three messages), directly and under a ``root_path`` (the router's way). What
hypothesis makes, per request:

- the route and its method (sometimes another method);
- path ids: any text percent-encoded, arbitrary bytes percent-encoded (invalid UTF-8), dots,
  encoded slashes, "²", 5,000 digits, ids past the 150-byte limit;
- query strings: ``id_type`` of every kind, repeated, percent-escapes, junk;
- headers: a right or wrong bearer key, a Content-Length that is right, missing, too small, too
  large or not a number, an ``Idempotency-Key`` from a small set (so replays and reuse happen)
  or any text, an odd ``X-Request-Id``;
- bodies from the route's request schema (pydantic's JSON schema), then mutated at one place:
  NaN, Infinity, 1e400, a 5,000-digit number, nesting 300 deep, huge strings, invalid UTF-8,
  a lone surrogate, "²", a wrong type, an unknown field; or bytes that are not JSON at all.

Properties: never a 5xx and always an answer, within ``_ANSWER_WITHIN`` seconds; a refused
request (anything but 202) stores nothing, in the outbox or the idempotency table; an accepted
one stores exactly its op ids (one idempotency row more when it carried a fresh key, none when
it was a replay). Each request starts from an empty outbox: what a 202 stored is leased and
acked before the next.

Timing: ``max_examples`` gives ~600 requests, a few milliseconds each in process, so the file
runs in about 10-15 s on two cores. ``deadline`` is off: the bound on an answer is explicit
(``asyncio.wait_for``), which fails with the request that hung rather than hypothesis's flaky
timing; ``derandomize`` keeps CI runs reproducible.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_from_bytes, unquote

import orjson
import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from ulid import ULID

from cio_relay.config import Settings
from cio_relay.outbox.base import Outbox
from cio_relay.outbox.factory import open_outbox
from cio_relay.server import create_app
from cio_relay.server.ingest import INGEST_ROUTES
from cio_relay.server.schemas import BatchBody

API_KEY = "fuzz-ingest-" + "0123456789abcdef" * 2
MAX_BODY = 256 * 1024  # small enough that huge bodies are cheap to refuse
_ANSWER_WITHIN = 10.0  # seconds; a request that takes longer counts as a hang

FUZZ = settings(
    max_examples=1000,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --- the service under test -----------------------------------------------------------------


@dataclass
class _Service:
    app: Any
    outbox: Outbox
    idempotency_db: Path
    runner: asyncio.Runner

    def idempotency_rows(self) -> int:
        with sqlite3.connect(f"file:{self.idempotency_db}?mode=ro", uri=True) as conn:
            (count,) = conn.execute("SELECT COUNT(*) FROM idempotency").fetchone()
        return int(count)

    def drain(self) -> list[str]:
        """Every stored op id, taken out of the outbox (one lease per person at a time)."""
        taken: list[str] = []
        while leases := self.outbox.lease(10_000, 60):
            taken.extend(lease.op.op_id for lease in leases)
            self.outbox.ack(leases)
        return taken


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Service]:
    data = tmp_path_factory.mktemp("ingestion-fuzz")
    config = Settings(
        api_keys=API_KEY,
        data_dir=data,
        outbox=f"sqlite:///{data}/outbox.db",
        api_max_body=MAX_BODY,
    )
    outbox = open_outbox(config.outbox_url)
    app = create_app(
        config, outbox=outbox, run_workers=False, idempotency_path=data / "idempotency.db"
    )
    runner = asyncio.Runner()
    try:
        yield _Service(app, outbox, data / "idempotency.db", runner)
    finally:
        runner.run(app.state.service.aclose())
        runner.close()
        outbox.close()


@dataclass(frozen=True)
class _Call:
    method: str
    root_path: str
    raw_path: bytes
    query: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    chunks: tuple[bytes, ...]
    idempotency_key: bytes | None


async def _asgi(app: Any, call: _Call) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """The answer as an ASGI server would see it: status, headers, body."""
    raw_path = call.root_path.encode() + call.raw_path
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": call.method,
        "scheme": "http",
        "path": unquote(raw_path.decode("ascii")),  # as uvicorn decodes it
        "raw_path": raw_path,
        "query_string": call.query,
        "root_path": call.root_path,
        "headers": list(call.headers),
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(call.chunks) - 1}
        for i, chunk in enumerate(call.chunks)
    ]
    answer: dict[str, Any] = {"status": 0, "headers": [], "body": b""}

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
            answer["headers"] = list(message.get("headers", ()))
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    await asyncio.wait_for(app(scope, receive, send), _ANSWER_WITHIN)
    return answer["status"], answer["headers"], answer["body"]


# --- what hypothesis makes ------------------------------------------------------------------

_ODD_TEXT = [
    "u-1", "ada@example.com", "12", "welcome", "", " ", ".", "..", "²", "١٢", "a/b", "\r\n",
    "null", "NaN", "\x00", "é", "🙂", "i" * 151, "x" * 1001, "1" * 5000,
]  # fmt: skip
TEXT = st.one_of(st.sampled_from(_ODD_TEXT), st.text(max_size=24))

_POISON = [
    orjson.Fragment(b"NaN"),
    orjson.Fragment(b"Infinity"),
    orjson.Fragment(b"-Infinity"),
    orjson.Fragment(b"1e400"),
    orjson.Fragment(b"-1e400"),
    orjson.Fragment(b"9" * 5000),
    orjson.Fragment(b"[" * 300 + b"]" * 300),
    orjson.Fragment(b'"\xff\xfe"'),  # not UTF-8
    orjson.Fragment(b'"\\ud800"'),  # a lone surrogate
    "x" * 100_001,
    "x" * (MAX_BODY + 1),
    "²",
    "١٢",
    "..",
    orjson.Fragment(b"18446744073709551616"),  # 2**64: past what orjson writes
    orjson.Fragment(b"-9223372036854775809"),
    None,
    True,
    [],
    {},
    {"nested": {"deeper": [1.5, None, "x"]}},
]
_INTEGERS = st.integers(-(2**63), 2**64 - 1)  # what orjson writes
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | _INTEGERS | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)


def _from_schema(schema: dict[str, Any], defs: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values that fit a (pydantic-made) JSON schema, biased toward odd text."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return st.deferred(lambda: _from_schema(defs[name], defs))
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of([_from_schema(option, defs) for option in schema[key]])
    kind = schema.get("type")
    if kind == "object" and "properties" in schema:
        properties = schema["properties"]
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries(
            {name: _from_schema(properties[name], defs) for name in required},
            optional={
                name: _from_schema(sub, defs)
                for name, sub in properties.items()
                if name not in required
            },
        )
    if kind == "array":
        low = schema.get("minItems", 0)
        return st.lists(_from_schema(schema.get("items", {}), defs), min_size=low, max_size=low + 4)
    simple: dict[str | None, st.SearchStrategy[Any]] = {
        "string": TEXT,
        "integer": st.integers(schema.get("minimum", -(2**63)), schema.get("maximum", 2**64 - 1)),
        "number": st.floats(allow_nan=False, allow_infinity=False),
        "boolean": st.booleans(),
        "null": st.none(),
        "object": st.dictionaries(TEXT, JSON_VALUES, max_size=4),
    }
    return simple.get(kind, JSON_VALUES)


def _places(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in ``value`` a mutation may go: each value, and a new key of each object."""
    yield path
    if isinstance(value, dict):
        yield (*path, "unknown_field")
        for key, child in value.items():
            yield from _places(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _places(child, (*path, index))


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replaced(value.get(head), rest, new)}
    copy = list(value)
    copy[head] = _replaced(copy[head], rest, new)
    return copy


@st.composite
def _mutated(draw: st.DrawFn, valid: st.SearchStrategy[Any]) -> Any:
    value = draw(valid)
    place = draw(st.sampled_from(list(_places(value))))
    return _replaced(value, place, draw(st.sampled_from(_POISON) | JSON_VALUES))


_GARBAGE = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b"", b"{", b"[]", b"null", b'"x"', b"{}" * 2, b"\xef\xbb\xbf{}", b"NaN"]),
)


def _bodies(model: Any) -> st.SearchStrategy[bytes]:
    """Bodies for ``model``'s route: valid ones, mutated ones, and bytes that are not JSON."""
    if model is None:
        return st.one_of(st.just(b""), _GARBAGE)
    schema = model.model_json_schema()
    valid = _from_schema(schema, schema.get("$defs", {}))
    return st.one_of(
        valid.map(orjson.dumps),
        _mutated(valid).map(orjson.dumps),
        _GARBAGE,
    )


_ODD_SEGMENTS = [
    "%ff", "%fe", "caf%E9", "caf%C3%A9", ".", "..", "%2E", "%2E%2E", "%2e%2e", "a%2Fb",
    "a%2Fevents", "%2F", "%00", "%0D%0A", "%C2%B2", "%D9%A1%D9%A2", "1" * 5000, "42", "u-1",
    "ada%40example.com", "i" * 151, "%", "%zz", "%e2%82", "a;b=c", "~!$&'()*+,;=:@", "",
]  # fmt: skip
SEGMENTS = st.one_of(
    st.sampled_from(_ODD_SEGMENTS),
    st.text(min_size=1, max_size=30).map(lambda text: quote(text, safe="")),
    st.binary(min_size=1, max_size=12).map(lambda raw: quote_from_bytes(raw, safe="")),
)
_ODD_QUERIES = [
    b"id_type=email", b"id_type=cio_id", b"id_type=id", b"id_type=phone", b"id_type=",
    b"id_type=%ff", b"id_type=%C2%B2", b"id_type=id&id_type=email", b"&&&=", b"%", b"a=%zz",
    b"id_type=" + b"x" * 5000,
]  # fmt: skip
QUERIES = st.one_of(
    st.just(b""),
    st.sampled_from(_ODD_QUERIES),
    st.binary(max_size=40).map(lambda raw: quote_from_bytes(raw, safe="=&").encode()),
)
AUTHORIZATIONS = st.sampled_from(
    [f"Bearer {API_KEY}".encode()] * 20
    + [None, b"Bearer wrong", b"Basic Zm9vOmJhcg==", f"bearer {API_KEY}".encode(), b"\xff"]
)
IDEMPOTENCY_KEYS = st.one_of(
    st.none(),
    st.none(),
    st.sampled_from([b"key-1", b"key-2", b"key-3"]),
    st.binary(max_size=300),
)
CONTENT_LENGTHS = st.sampled_from(
    ["right", "right", "none", "smaller", "larger", b"9" * 5000, "²".encode(), b"-1", b"1e3", b" 7"]
)


BODIES = {name: _bodies(model) for _method, _path, name, model in INGEST_ROUTES}


@st.composite
def calls(draw: st.DrawFn) -> _Call:
    method, template, name, _model = draw(st.sampled_from(INGEST_ROUTES))
    if draw(st.integers(0, 19)) == 0:
        method = draw(st.sampled_from(["GET", "PUT", "PATCH", "DELETE", "POST"]))
    raw_path = template.replace("{id}", draw(SEGMENTS)).encode()
    body = draw(BODIES[name])
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=2)))
    chunks = tuple(body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True))
    headers: list[tuple[bytes, bytes]] = [(b"host", b"testserver")]
    if (authorization := draw(AUTHORIZATIONS)) is not None:
        headers.append((b"authorization", authorization))
    length = draw(CONTENT_LENGTHS)
    sizes = {"right": len(body), "smaller": max(0, len(body) - 1), "larger": len(body) + 1}
    if isinstance(length, bytes):
        headers.append((b"content-length", length))
    elif length in sizes:
        headers.append((b"content-length", b"%d" % sizes[length]))
    key = draw(IDEMPOTENCY_KEYS)
    if key is not None:
        headers.append((b"idempotency-key", key))
    headers.append((b"x-request-id", draw(st.binary(max_size=20))))
    return _Call(
        method=method,
        root_path=draw(st.sampled_from(["", "", "/relay"])),
        raw_path=raw_path,
        query=draw(QUERIES),
        headers=tuple(headers),
        chunks=chunks or (b"",),
        idempotency_key=key,
    )


# --- the properties -------------------------------------------------------------------------


def _check(service: _Service, call: _Call) -> None:
    note(f"{call.method} {call.root_path}{call.raw_path[:300]!r}?{call.query[:200]!r}")
    note(f"headers {call.headers!r:.600}")
    note(f"body {b''.join(call.chunks)[:600]!r}")
    assert service.outbox.depth().pending == 0
    keys_before = service.idempotency_rows()
    status, headers, body = service.runner.run(_asgi(service.app, call))
    event(f"status {status}")  # shown by --hypothesis-show-statistics
    if status == 422:
        event(f"422 {orjson.loads(body)['field']}")
    assert 0 < status < 500, (status, body[:300])
    stored = service.drain()
    keys_added = service.idempotency_rows() - keys_before
    if status != 202:
        assert (stored, keys_added) == ([], 0), (status, body[:300])
        return
    op_ids = orjson.loads(body)["op_ids"]
    assert all(str(ULID.from_str(op_id)) == op_id for op_id in op_ids)
    if (b"idempotent-replayed", b"true") in headers:
        assert (stored, keys_added) == ([], 0)  # a replay stores nothing again
        return
    assert sorted(stored) == sorted(op_ids) and len(set(op_ids)) == len(op_ids)
    assert keys_added == (1 if call.idempotency_key is not None else 0)


@FUZZ
@given(call=calls())
def test_every_ingestion_route_answers_below_500_and_stores_all_or_nothing(
    service: _Service, call: _Call
) -> None:
    _check(service, call)


_BATCH_SCHEMA = BatchBody.model_json_schema()
_PLAIN_ITEMS = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["track", "page", "screen"]),
        "person": st.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True),
        "name": st.sampled_from(["order_completed", "https://x.example/a", "n"]),
        "data": st.dictionaries(st.text(max_size=8), _INTEGERS | st.text(max_size=8), max_size=3),
    }
)
_SCHEMA_ITEMS = _from_schema(
    _BATCH_SCHEMA["properties"]["operations"]["items"], _BATCH_SCHEMA["$defs"]
)
# Mostly plain items, which are valid, so that one odd place decides the batch's fate.
_BATCH_ITEMS = st.integers(0, 4).flatmap(lambda n: _SCHEMA_ITEMS if n == 0 else _PLAIN_ITEMS)


@settings(FUZZ, max_examples=300)
@given(
    body=_mutated(
        st.fixed_dictionaries({"operations": st.lists(_BATCH_ITEMS, min_size=3, max_size=8)})
    )
)
def test_a_batch_with_one_odd_place_is_stored_whole_or_not_at_all(
    service: _Service, body: Any
) -> None:
    headers = ((b"authorization", f"Bearer {API_KEY}".encode()),)
    call = _Call("POST", "", b"/v1/batch", b"", headers, (orjson.dumps(body),), None)
    _check(service, call)
