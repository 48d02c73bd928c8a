"""The disk under the outbox fills up mid-run, then is freed: nothing acknowledged is lost,
nothing is stored twice, nothing refused is stored, and delivery resumes by itself.

The service (ingestion, idempotency store, SQLite outbox, worker) keeps its data on a small
filesystem the test makes: a size-limited tmpfs, mounted here where the machine allows it (root
with CAP_SYS_ADMIN, as on CI). Where it does not, the same run is made with the outbox's writes
failing as SQLite fails on a full disk (an injected ``sqlite3.OperationalError``), so the test
still checks everything above the storage. A filler file takes the free space and is deleted
to give it back.

Ingestion is driven in rounds of batch requests; every 202 is remembered with its op ids. While
the disk is full the answers must be 503 ``storage_unavailable`` with ``Retry-After`` (never a
500), readiness must say why, and once space is back every acknowledged op id must reach the
emulator exactly once, and no refused one at all.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cio_relay.emulator import EmulatorServer
from cio_relay.operations import Operation
from cio_relay.outbox.sqlite import SqliteOutbox
from cio_relay.server import create_app
from tests.fixtures.delivery import emulator_settings, pages, wait_for
from tests.server.conftest import serve

DISK_BYTES = 8 * 1024 * 1024
BATCH = 50
DEADLINE = 60.0
#: Space back -> delivery going again: the dispatcher's longest wait between tries (2 s) and
#: a lease round, with room for a busy CI machine.
RESUME_BOUND = 10.0


class Disk:
    """A small filesystem at ``path``; ``fill`` takes all its free space, ``free`` gives it back."""

    real = True

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler"

    def fill(self) -> None:
        descriptor = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 20, 1 << 16, 1 << 12, 1 << 9, 1):  # down to the last byte
                with contextlib.suppress(OSError):
                    while True:
                        os.write(descriptor, b"\0" * size)
        finally:
            os.close(descriptor)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def outbox(self) -> SqliteOutbox:
        return SqliteOutbox(self.path / "outbox.db")


class InjectedDisk(Disk):
    """Where no filesystem can be mounted: SQLite is told that the outbox's file may not grow
    (``PRAGMA max_page_count`` on its writer connection), so its writes fail as on a full disk,
    with SQLite's own error, once the free pages inside the file are used up."""

    real = False
    _NO_LIMIT = 4_294_967_294

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._box: SqliteOutbox | None = None

    def outbox(self) -> SqliteOutbox:
        self._box = super().outbox()
        return self._box

    def _limit_pages(self, limit: str) -> None:
        assert self._box is not None, "open the outbox first"
        with self._box._lock:
            self._box._conn.execute(f"PRAGMA max_page_count = {limit}")

    def fill(self) -> None:
        self._limit_pages("1")  # SQLite raises a limit below the file's size to its size

    def free(self) -> None:
        self._limit_pages(str(self._NO_LIMIT))


def _mount_tmpfs(path: Path) -> bool:
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    return made.returncode == 0


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    path = tmp_path / "small-disk"
    path.mkdir()
    mounted = os.geteuid() == 0 and _mount_tmpfs(path)
    try:
        yield Disk(path) if mounted else InjectedDisk(path)
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=False)


def _post_batch(http: httpx.Client, round_: int) -> httpx.Response:
    operations = [
        {"type": "track", "person": f"p{n % 20}", "name": "tick", "data": {"round": round_}}
        for n in range(BATCH)
    ]
    return http.post("/v1/batch", json={"operations": operations})


def test_a_full_disk_refuses_cleanly_and_delivery_resumes_once_space_is_back(
    disk: Disk, emulator: EmulatorServer
) -> None:
    api_key = secrets.token_urlsafe(32)
    outbox = disk.outbox()
    settings = emulator_settings(
        emulator, "sqlite:///unused", api_keys=api_key, data_dir=disk.path, retry_base=0.01
    )
    app = create_app(settings, outbox=outbox, idempotency_path=disk.path / "idempotency.db")
    acked: list[str] = []
    refused: list[httpx.Response] = []
    auth = {"Authorization": f"Bearer {api_key}"}
    try:
        with serve(app) as url, httpx.Client(base_url=url, headers=auth, timeout=30) as http:
            for round_ in range(5):  # some work delivered normally first
                acked += _post_batch(http, round_).json()["op_ids"]
            disk.fill()
            for round_ in range(5, 40):  # until the storage refuses, and a little more
                answer = _post_batch(http, round_)
                if answer.status_code == 202:
                    acked += answer.json()["op_ids"]
                else:
                    refused.append(answer)
                    if len(refused) >= 5:
                        break
            checks = httpx.get(f"{url}/readyz").json()["checks"]
            disk.free()
            freed_at = time.monotonic()
            assert wait_for(lambda: _accepted(emulator) >= len(acked), DEADLINE)
            resumed_after = time.monotonic() - freed_at
            after = _post_batch(http, 99)
            acked += after.json()["op_ids"]
            assert wait_for(lambda: outbox.depth().pending == 0, DEADLINE)
    finally:
        outbox.close()
    assert refused, "the disk never filled up"
    for answer in refused:
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"] == "storage_unavailable"
        assert "database or disk is full" in answer.json()["message"]
        assert int(answer.headers["retry-after"]) >= 1
    assert checks["outbox"] == "failed: OperationalError" or checks["workers"].startswith(
        "unavailable"
    ), checks
    assert after.status_code == 202
    assert resumed_after < RESUME_BOUND
    with httpx.Client(base_url=f"{emulator.url}/_emulator") as inspect:
        events = pages(inspect, "/events", "events")
    delivered = [event["id"] for event in events]
    assert sorted(delivered) == sorted(acked)  # every acknowledged op once, nothing refused


def _accepted(emulator: EmulatorServer) -> int:
    count: int = httpx.get(f"{emulator.url}/_emulator/stats").json()["events_accepted"]
    return count


def test_the_filler_really_fills_the_disk(disk: Disk) -> None:
    # The premise of the test above, on a mounted filesystem: writing fails for lack of space.
    if not disk.real:
        assert isinstance(disk, InjectedDisk)
        box = disk.outbox()
        try:
            disk.fill()
            with pytest.raises(sqlite3.OperationalError, match="disk is full"):
                box.enqueue([_event() for _ in range(100)])  # more than the last page holds
            disk.free()
            assert box.enqueue([_event()]) == 1
        finally:
            box.close()
        return
    disk.fill()
    with pytest.raises(OSError, match="No space left") as raised:
        (disk.path / "more").write_bytes(b"x" * 4096)
    assert raised.value.errno == errno.ENOSPC
    disk.free()
    (disk.path / "more").write_bytes(b"x" * 4096)


def _event() -> Operation:
    from cio_relay import operations as ops

    return ops.track("p", "tick")
