"""The idempotency store: retention, per-scope keys, and recovery of a claim left pending."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cio_relay.outbox.base import Outbox
from cio_relay.server.auth import ApiKeys
from cio_relay.server.idempotency import Claim, IdempotencyStore, fingerprint
from tests.sqlite.old_layout import ADA, BOB, CREATED_AT, CY, restore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[IdempotencyStore]:
    box = IdempotencyStore(tmp_path / "idempotency.db", retention=100.0)
    yield box
    box.close()


def test_claims_are_pending_until_complete_and_forgotten_on_refusal(
    store: IdempotencyStore,
) -> None:
    claim = Claim("scope", "key-1", b"print", ("01A", "01B"))
    store.reserve([claim], now=1000.0)
    seen = store.lookup("scope", "key-1", now=1001.0)
    assert seen is not None and not seen.done and seen.op_ids == ["01A", "01B"]
    store.complete([claim])
    assert store.lookup("scope", "key-1", now=1001.0).done  # type: ignore[union-attr]
    assert store.lookup("other-scope", "key-1", now=1001.0) is None
    other = Claim("scope", "key-2", b"print", ("01C",))
    store.reserve([other], now=1000.0)
    store.forget([other])
    assert store.lookup("scope", "key-2", now=1001.0) is None


def test_keys_expire_after_the_retention(store: IdempotencyStore) -> None:
    store.reserve([Claim("s", "old", b"p", ("01A",))], now=1000.0)
    store.reserve([Claim("s", "new", b"p", ("01B",))], now=1090.0)
    assert store.lookup("s", "old", now=1101.0) is None  # past the retention: a fresh key
    assert store.expire(now=1101.0) == 1
    assert store.lookup("s", "new", now=1101.0) is not None


def test_keys_are_stored_hashed(store: IdempotencyStore, tmp_path: Path) -> None:
    store.reserve([Claim("s", "customer-secret-order-77", b"p", ("01A",))])
    store.close()
    assert b"customer-secret-order-77" not in (tmp_path / "idempotency.db").read_bytes()


def test_a_claim_left_pending_by_a_crash_is_finished_with_the_same_op_ids(
    base_url: str, auth: dict[str, str], api_key: str, outbox: Outbox, tmp_path: Path
) -> None:
    body = {"name": "paid", "data": {"total": 5}}
    path = "/v1/people/u-1/events"
    # What a process that died between writing the claim and enqueueing left behind:
    principal = ApiKeys([api_key]).verify(api_key)
    assert principal is not None
    canonical = b'{"data":{"total":5},"name":"paid","timestamp":null,"type":"event"}'
    crashed = IdempotencyStore(tmp_path / "idempotency.db")
    left = Claim(
        principal.scope,
        "k-crash",
        fingerprint("POST", f"{path}?", canonical),
        ("01J0000000000000000000CRSH",),
    )
    crashed.reserve([left])
    crashed.close()
    response = httpx.post(
        f"{base_url}{path}", json=body, headers={**auth, "Idempotency-Key": "k-crash"}
    )
    assert response.status_code == 202
    assert response.json()["op_ids"] == ["01J0000000000000000000CRSH"]
    (lease,) = outbox.lease(10, 60)
    assert lease.op.op_id == "01J0000000000000000000CRSH" and lease.op.payload["name"] == "paid"
    again = httpx.post(
        f"{base_url}{path}", json=body, headers={**auth, "Idempotency-Key": "k-crash"}
    )
    assert again.headers["Idempotent-Replayed"] == "true"
    assert outbox.depth().pending == 1


def test_a_file_written_before_the_sqlite_layer_keeps_its_keys(tmp_path: Path) -> None:
    path = restore("idempotency", tmp_path / "idempotency.db")
    store = IdempotencyStore(path)
    try:
        done = store.lookup("scope-a", "key-1", now=CREATED_AT + 1)
        pending = store.lookup("scope-a", "key-2", now=CREATED_AT + 1)
        assert done is not None and done.done and done.op_ids == [ADA[0]]
        assert pending is not None and not pending.done and pending.op_ids == [BOB, CY]
        store.reserve([Claim("scope-a", "key-3", b"print", ("01C",))], now=CREATED_AT + 2)
        assert store.lookup("scope-a", "key-3", now=CREATED_AT + 3) is not None
    finally:
        store.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    finally:
        conn.close()


def test_durability_sets_the_synchronous_level(tmp_path: Path) -> None:
    for durability, level in (("process", 1), ("power", 2)):  # NORMAL, FULL
        store = IdempotencyStore(tmp_path / f"{durability}.db", durability=durability)  # type: ignore[arg-type]
        try:
            assert store._db.writer.execute("PRAGMA synchronous").fetchone()[0] == level
        finally:
            store.close()
