"""Bulk sync from PostgreSQL to Customer.io (issue 14), next to the naive loop, in one run.

A real PostgreSQL (tests/fixtures/postgres_server.py) holds ``users``: an ``id bigint`` key,
``updated_at`` and 20 attribute columns of mixed types (text, int, bool, timestamptz, numeric,
jsonb), filled server-side by ``INSERT ... SELECT ... FROM generate_series``. The emulator runs
in its own process with a Track rate limit (a fault rule: a token bucket of ``BENCH_SYNC_RATE``
requests/s on ``/api/``, 429 past it), one ``cio-relay worker`` process delivers the SQLite
outbox paced at the same rate (``CIO_RELAY_TRACK_RATE``), and each sync runs in a process of
its own so its peak RSS is its own.

Prints, in one run:
(a) the naive loop: one official-SDK ``identify`` per row (customerio 3.2.0, as bench_relay
drives it), on ``BENCH_SYNC_NAIVE_ROWS`` rows read from the same table, unthrottled, extrapolated
to every row; and the floor the rate limit puts under it (one request per row);
(b) first sync: seconds until ``BulkSync.run`` returns (everything enqueued), seconds until the
emulator holds every person (the worker ran concurrently), requests sent and people per request;
(c) re-sync after ``BENCH_SYNC_CHANGED`` rows changed server-side: seconds, and the check that
exactly those were sent (``run.changed``, the emulator's accepted items, sampled people); then
(c') as many more changed and an incremental run (``updated_at`` past the watermark less the
overlap), checked the same way;
(d) each sync process's peak RSS (``VmHWM``); (e) ratios against the naive loop and the targets.

With ``BENCH_SYNC_DRAIN_AFTER=1`` a second first sync (fresh outbox, emulator reset) runs the
worker after the sync, in the sync's process (``relay.worker().drain()``), for comparison.
With ``BENCH_SYNC_PROFILE=FILE`` each sync runs under cProfile (the first saved to FILE, the
re-sync to FILE.snapshot) and the top functions by own time are printed.

Everything targets 127.0.0.1 and every wait is bounded. Scale it with ``BENCH_SYNC_ROWS``
(default 1,000,000), ``BENCH_SYNC_NAIVE_ROWS`` (10,000), ``BENCH_SYNC_CHANGED`` (1 % of the
rows), ``BENCH_SYNC_RATE`` (100 requests/s), ``BENCH_SYNC_BATCH`` (the spec's ``batch_size``,
1,000).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from benchmarks.support import BENCH_KEYS, cpu_seconds, free_port, start_emulator, wait_for

ROWS = int(os.environ.get("BENCH_SYNC_ROWS", "1000000"))
NAIVE_ROWS = min(ROWS, int(os.environ.get("BENCH_SYNC_NAIVE_ROWS", "10000")))
CHANGED = int(os.environ.get("BENCH_SYNC_CHANGED", str(max(1, ROWS // 100))))
RATE = float(os.environ.get("BENCH_SYNC_RATE", "100"))
BATCH = int(os.environ.get("BENCH_SYNC_BATCH", "1000"))
DRAIN_AFTER = os.environ.get("BENCH_SYNC_DRAIN_AFTER", "") == "1"
PROFILE = os.environ.get("BENCH_SYNC_PROFILE", "")
#: Seconds any one phase may take before the run gives up.
DEADLINE = float(os.environ.get("BENCH_SYNC_DEADLINE", "1800"))
#: Changed people whose attributes are read back from the emulator.
SAMPLED = 20
TARGETS = {"enqueued": 20.0, "accepted": 30.0, "resync": 10.0, "rss_mb": 300.0}

_TABLE = """
CREATE TABLE users (
    id bigint PRIMARY KEY,
    email text, first_name text, last_name text, plan text, country text, city text,
    company text,
    logins int, age int, score int,
    lifetime_value numeric(12, 2), balance numeric(12, 2),
    verified boolean, newsletter boolean, beta boolean,
    created_at timestamptz, last_login_at timestamptz, trial_ends_at timestamptz,
    preferences jsonb, tags jsonb,
    updated_at timestamptz NOT NULL
)
"""
_FILL = """
INSERT INTO users
SELECT g,
    'user' || g || '@example.com', 'First' || (g %% 1000), 'Last' || (g %% 5000),
    (ARRAY['free', 'starter', 'pro', 'enterprise'])[1 + g %% 4],
    (ARRAY['US', 'DE', 'FR', 'GB', 'BR', 'IN', 'JP'])[1 + g %% 7],
    'City ' || (g %% 300), 'Company ' || (g %% 20000),
    g %% 500, 18 + g %% 60, (g * 7919) %% 10000,
    ((g * 31) %% 100000) / 100.0, ((g * 17) %% 50000) / 100.0,
    g %% 2 = 0, g %% 3 = 0, g %% 10 = 0,
    timestamptz '2020-01-01 00:00:00+00' + (g %% 100000) * interval '1 minute',
    timestamptz '2026-01-01 00:00:00+00' + (g %% 50000) * interval '1 minute',
    CASE WHEN g %% 5 = 0 THEN timestamptz '2027-01-01 00:00:00+00' END,
    jsonb_build_object('theme', (ARRAY['dark', 'light'])[1 + g %% 2], 'digest', g %% 7),
    jsonb_build_array('t' || (g %% 5), 't' || (g %% 11)),
    timestamptz '2026-06-01 00:00:00+00'
FROM generate_series(1::bigint, %(rows)s) AS g
"""
#: The re-sync's change: two attributes of CHANGED random rows (a fixed seed: the same rows
#: each run), with their updated_at.
_CHANGE = """
UPDATE users SET score = score + 1, plan = 'changed', updated_at = now()
WHERE id IN (SELECT id FROM users ORDER BY random() LIMIT %(changed)s)
RETURNING id
"""


# --- PostgreSQL -------------------------------------------------------------------------------


def _fill(url: str, rows: int) -> float:
    import psycopg

    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_TABLE)
        conn.execute(_FILL, {"rows": rows})
        conn.execute("VACUUM ANALYZE users")
    return time.perf_counter() - started


def _change(url: str, changed: int, seed: float = 0.14) -> list[int]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT setseed(%s)", (seed,))
        ids = [row[0] for row in conn.execute(_CHANGE, {"changed": changed})]
        conn.execute("VACUUM ANALYZE users")
    return ids


# --- the naive loop ---------------------------------------------------------------------------


def _sdk_value(value: Any) -> Any:
    """A cell as the SDK's JSON encoder takes it: the conversions the naive loop needs too."""
    if isinstance(value, datetime):
        return math.floor(value.timestamp())
    if isinstance(value, Decimal):
        return float(value)
    return value


def naive_seconds(emulator_url: str, pg_url: str, rows: int) -> float:
    """One official-SDK ``identify`` per row of the first ``rows`` rows, read as the app would
    (a server-side cursor); the seconds it took."""
    import psycopg

    from customerio import CustomerIO

    client = CustomerIO(BENCH_KEYS["site_id"], BENCH_KEYS["track_api_key"])
    client.base_url = f"{emulator_url}/api/v1"  # customerio-api.md §7: plain-HTTP workaround
    started = time.perf_counter()
    with psycopg.connect(pg_url) as conn, conn.cursor(name="naive") as cursor:
        cursor.execute("SELECT * FROM users ORDER BY id LIMIT %s", (rows,))
        columns: list[str] | None = None
        for row in cursor:
            if columns is None:
                columns = [column.name for column in cursor.description or ()]
            record = dict(zip(columns, row, strict=True))
            person = record.pop("id")
            record.pop("updated_at")
            client.identify(id=person, **{k: _sdk_value(v) for k, v in record.items()})
    elapsed = time.perf_counter() - started
    client.close()
    return elapsed


# --- the sync, in its own process ---------------------------------------------------------------


def _env(emulator_url: str, outbox: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CUSTOMERIO_SITE_ID=BENCH_KEYS["site_id"],
        CUSTOMERIO_TRACK_API_KEY=BENCH_KEYS["track_api_key"],
        CUSTOMERIO_APP_API_KEY=BENCH_KEYS["app_api_key"],
        CUSTOMERIO_TRACK_URL=emulator_url,
        CUSTOMERIO_APP_URL=emulator_url,
        CIO_RELAY_OUTBOX=f"sqlite:///{outbox}",
        CIO_RELAY_STAMP_ENV="0",
        CIO_RELAY_TRACK_RATE=str(RATE),
    )
    return env


def _peak_rss_kb() -> int:
    # VmHWM: this process's own peak. ru_maxrss would also count the peak of the parent it was
    # spawned from (Linux carries it over exec), here the benchmark driver's.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _own_cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _sync_child(pg_url: str, drain: bool, profile: str, mode: str = "snapshot") -> None:
    """Run in a subprocess (settings from the environment): one ``BulkSync`` run in ``mode``,
    then, with ``drain``, the worker in this process; prints one JSON line of times and
    counts."""
    from cio_relay.config import Settings
    from cio_relay.relay import Relay
    from cio_relay.sync import UserRepository
    from cio_relay.sync.bulk import BulkSync
    from cio_relay.sync.runs import SyncRun
    from cio_relay.sync.spec import SyncSpec

    relay = Relay(Settings())
    spec = SyncSpec.model_validate(
        {
            "name": "bench",
            "source": pg_url,
            "table": "users",
            "updated_at_column": "updated_at",
            "batch_size": BATCH,
            "mode": mode,
        }
    )
    batches = [0]

    def progress(run: SyncRun) -> None:
        batches[0] += 1

    sync = BulkSync(UserRepository(relay), spec)
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
    started = time.monotonic()
    if profiler is not None:
        profiler.enable()
    run = sync.run(on_progress=progress)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    enqueued = time.monotonic()
    result: dict[str, Any] = {
        "cpu_s": _own_cpu_seconds(),
        "started": started,
        "enqueued": enqueued,
        "rows_read": run.rows_read,
        "added": run.added,
        "changed": run.changed,
        "unchanged": run.unchanged,
        "invalid": run.invalid,
        "operations": run.operations,
        "status": run.status,
        "progress_calls": batches[0],
    }
    if drain:
        stats = relay.worker().drain(DEADLINE)
        result.update(drained=time.monotonic(), requests=stats.requests, dead=stats.dead_total)
    relay.close()
    result["peak_rss_kb"] = _peak_rss_kb()
    print(json.dumps(result), flush=True)


def _run_sync(
    env: dict[str, str],
    pg_url: str,
    *,
    drain: bool = False,
    profile: str = "",
    mode: str = "snapshot",
) -> dict[str, Any]:
    code = (
        "import sys; from benchmarks.bench_sync import _sync_child; "
        "_sync_child(sys.argv[1], sys.argv[2] == '1', sys.argv[3], sys.argv[4])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, pg_url, "1" if drain else "0", profile, mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the sync process failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@contextmanager
def _worker(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cio_relay", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(30)


def _create_outbox(outbox: Path) -> None:
    """The outbox file and its tables, before the worker opens it."""
    from cio_relay.config import Settings
    from cio_relay.relay import Relay

    Relay(Settings(outbox=f"sqlite:///{outbox}", stamp_env=False)).close()


# --- the emulator -----------------------------------------------------------------------------


def _limit_track(client: httpx.Client) -> None:
    """A fresh emulator (a reset clears faults too) whose Track API answers 429 past RATE."""
    client.post("/_emulator/reset").raise_for_status()
    rule = {"path": "/api/", "rate_limit": {"rps": RATE, "retry_after": 1}}
    client.post("/_emulator/faults", json=rule).raise_for_status()


def _stats(client: httpx.Client) -> dict[str, Any]:
    stats: dict[str, Any] = client.get("/_emulator/stats", timeout=30).json()
    return stats


def _batch_requests(stats: dict[str, Any]) -> tuple[int, int]:
    """(accepted, refused with 429) ``/api/v2/batch`` requests so far."""
    by_status: dict[str, int] = next(
        (counts for endpoint, counts in stats["requests"].items() if "batch" in endpoint), {}
    )
    return int(by_status.get("200", 0)), int(by_status.get("429", 0))


def _await_items(client: httpx.Client, items: int) -> float:
    """Waits until the emulator accepted ``items`` batch items; the monotonic time it saw it."""
    wait_for(
        lambda: _stats(client)["batch_items_accepted"] >= items,
        DEADLINE,
        f"{items:,} items at the emulator",
        interval=0.1,
    )
    return time.monotonic()


def _changed_people_hold_it(client: httpx.Client, ids: list[int]) -> bool:
    for person in ids[:SAMPLED]:
        attributes = client.get(f"/_emulator/people/{person}").json()["attributes"]
        if attributes.get("plan") != "changed":
            return False
    return True


# --- the report -------------------------------------------------------------------------------


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _against(value: float, target: float) -> str:
    return f"target <= {target:,.0f}: {'met' if value <= target else 'missed'}"


def _first_sync(client: httpx.Client, env: dict[str, str], pg_url: str) -> dict[str, Any]:
    """The first sync with the worker process running beside it."""
    before = _stats(client)
    with _worker(env) as worker:
        first = _run_sync(env, pg_url, profile=PROFILE)
        accepted = _await_items(client, before["batch_items_accepted"] + first["operations"])
        first["worker_cpu_s"] = cpu_seconds(worker.pid)
    after = _stats(client)
    sent, limited = _batch_requests(after)
    first.update(
        accepted=accepted,
        requests=sent - _batch_requests(before)[0],
        refused_429=limited - _batch_requests(before)[1],
        people=after["people"],
        load=_load(),
    )
    return first


def _resync(
    client: httpx.Client,
    env: dict[str, str],
    pg_url: str,
    ids: list[int],
    mode: str = "snapshot",
) -> dict[str, Any]:
    before = _stats(client)
    profile = PROFILE and f"{PROFILE}.{mode}"
    with _worker(env) as worker:
        again = _run_sync(env, pg_url, profile=profile, mode=mode)
        accepted = _await_items(client, before["batch_items_accepted"] + again["operations"])
        again["worker_cpu_s"] = cpu_seconds(worker.pid)
    after = _stats(client)
    again.update(
        accepted=accepted,
        items_sent=after["batch_items_accepted"] - before["batch_items_accepted"],
        requests=_batch_requests(after)[0] - _batch_requests(before)[0],
        sampled_ok=_changed_people_hold_it(client, ids),
        load=_load(),
    )
    return again


def _drain_after(client: httpx.Client, emulator_url: str, pg_url: str, tmp: Path) -> dict[str, Any]:
    outbox = tmp / "drain-after.db"
    _limit_track(client)
    result = _run_sync(_env(emulator_url, outbox), pg_url, drain=True)
    result["people"] = _stats(client)["people"]
    return result


def _print_profile(path: str, what: str) -> None:
    import pstats

    print(f"cProfile of the {what} ({path}), top 25 by own time:")
    pstats.Stats(path, stream=sys.stdout).sort_stats("tottime").print_stats(25)


def _report(naive: float, first: dict[str, Any], again: dict[str, Any], ids: list[int]) -> None:
    enqueue_s = first["enqueued"] - first["started"]
    accepted_s = first["accepted"] - first["started"]
    resync_s = again["enqueued"] - again["started"]
    resync_accepted_s = again["accepted"] - again["started"]
    naive_full = naive / NAIVE_ROWS * ROWS
    naive_floor = ROWS / RATE  # one request per row, at the rate limit
    rss_mb = max(first["peak_rss_kb"], again["peak_rss_kb"]) / 1024
    per_request = first["operations"] / max(1, first["requests"])
    print(
        f"(a) naive loop, official SDK identify per row: {NAIVE_ROWS:,} rows in {naive:.1f} s"
        f" ({NAIVE_ROWS / naive:,.0f} rows/s, unthrottled); extrapolated to {ROWS:,} rows:"
        f" {naive_full:,.0f} s; at {RATE:,.0f} req/s it cannot go under {naive_floor:,.0f} s"
    )
    print(
        f"(b) first sync of {ROWS:,} rows: enqueued in {enqueue_s:.1f} s"
        f" ({ROWS / enqueue_s:,.0f} rows/s; {_against(enqueue_s, TARGETS['enqueued'])});"
        f" all accepted at the emulator in {accepted_s:.1f} s"
        f" ({_against(accepted_s, TARGETS['accepted'])}); {first['requests']:,} batch requests,"
        f" {per_request:,.0f} people a request, {first['refused_429']} answered 429;"
        f" emulator people {first['people']:,} (rows {ROWS:,}); load {first['load']}"
    )
    print(
        f"(c) re-sync with {len(ids):,} changed: {resync_s:.1f} s to enqueued"
        f" ({_against(resync_s, TARGETS['resync'])}), {resync_accepted_s:.1f} s to accepted;"
        f" run.changed {again['changed']:,}, unchanged {again['unchanged']:,}, items sent"
        f" {again['items_sent']:,} in {again['requests']} requests; sampled changed people"
        f" updated: {again['sampled_ok']}; load {again['load']}"
    )
    print(
        f"    CPU: first sync process {first['cpu_s']:.1f} s"
        f" ({first['cpu_s'] / ROWS * 1e6:,.0f} us a row), its worker {first['worker_cpu_s']:.1f} s;"
        f" re-sync process {again['cpu_s']:.1f} s ({again['cpu_s'] / ROWS * 1e6:,.0f} us a row)"
    )
    print(f"(d) peak RSS of the sync process: {rss_mb:,.0f} MB ({_against(rss_mb, 300)})")
    print(
        f"(e) ratio naive / ours: first sync {naive_full / accepted_s:,.1f}x unthrottled naive"
        f" ({naive_floor / accepted_s:,.0f}x against its rate-limit floor); re-sync"
        f" {naive_full / resync_accepted_s:,.1f}x ({naive_floor / resync_accepted_s:,.0f}x)"
    )


def _report_incremental(later: dict[str, Any], ids: list[int]) -> None:
    seconds = later["enqueued"] - later["started"]
    print(
        f"(c') incremental re-sync (updated_at > watermark - overlap) after {len(ids):,} more"
        f" changed: {seconds:.1f} s to enqueued ({_against(seconds, TARGETS['resync'])}),"
        f" {later['accepted'] - later['started']:.1f} s to accepted; rows read"
        f" {later['rows_read']:,}, run.changed {later['changed']:,}, items sent"
        f" {later['items_sent']:,}; sampled changed people updated: {later['sampled_ok']};"
        f" CPU {later['cpu_s']:.1f} s; load {later['load']}"
    )


def _check(first: dict[str, Any], again: dict[str, Any], ids: list[int]) -> None:
    problems = []
    if first["people"] != ROWS or first["added"] != ROWS or first["invalid"]:
        problems.append(f"first sync: {first}")
    if again["changed"] != len(ids) or again["items_sent"] != len(ids) or not again["sampled_ok"]:
        problems.append(f"re-sync sent other than the {len(ids):,} changed: {again}")
    if problems:
        raise AssertionError("; ".join(problems))


def main() -> None:
    from tests.fixtures.postgres_server import PostgresServer

    print(f"{ROWS:,} rows, naive loop on {NAIVE_ROWS:,}, {CHANGED:,} changed; load {_load()}")
    with tempfile.TemporaryDirectory() as tmp, PostgresServer() as server:
        pg_url = server.create_database("bench")
        print(f"PostgreSQL filled with {ROWS:,} rows in {_fill(pg_url, ROWS):.1f} s", flush=True)
        port = free_port()
        with start_emulator(port) as url, httpx.Client(base_url=url) as client:
            naive = naive_seconds(url, pg_url, NAIVE_ROWS)
            print(f"naive loop done; load {_load()}", flush=True)
            outbox = Path(tmp) / "outbox.db"
            _create_outbox(outbox)
            _limit_track(client)
            env = _env(url, outbox)
            first = _first_sync(client, env, pg_url)
            print(f"first sync done: {first}", flush=True)
            ids = _change(pg_url, CHANGED)
            again = _resync(client, env, pg_url, ids)
            print(f"re-sync done: {again}", flush=True)
            later_ids = _change(pg_url, CHANGED, seed=0.41)
            later = _resync(client, env, pg_url, later_ids, mode="incremental")
            print(f"incremental re-sync done: {later}", flush=True)
            _report(naive, first, again, ids)
            _report_incremental(later, later_ids)
            if DRAIN_AFTER:
                late = _drain_after(client, url, pg_url, Path(tmp))
                print(
                    f"(f) worker after the sync, in its process: enqueued in"
                    f" {late['enqueued'] - late['started']:.1f} s, drained"
                    f" {late['drained'] - late['enqueued']:.1f} s later"
                    f" ({late['drained'] - late['started']:.1f} s in all),"
                    f" {late['requests']:,} requests, people {late['people']:,},"
                    f" peak RSS {late['peak_rss_kb'] / 1024:,.0f} MB"
                )
    if PROFILE:
        _print_profile(PROFILE, "first sync")
        _print_profile(f"{PROFILE}.snapshot", "re-sync")
    _check(first, again, ids)
    _check(first, later, later_ids)


if __name__ == "__main__":
    main()
