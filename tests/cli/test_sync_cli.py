"""``cio-relay sync run|plan|status|reset`` over the real CLI, on a SQLite source file and a
SQLite outbox (``CIO_RELAY_OUTBOX``), syncs named in a syncs file or given as flags."""

from __future__ import annotations

import re
import secrets
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner, Result

from cio_relay.cli import app
from cio_relay.operations import Operation
from cio_relay.outbox.factory import open_outbox
from tests.cli.helpers import Child, clean_env, wait_for
from tests.cli.test_run import DELIVERY, START
from tests.fixtures.redis_server import RedisServer
from tests.sync.conftest import take_all


@dataclass
class Place:
    """A source database of people, an outbox and a syncs file, in one directory."""

    root: Path
    outbox_url: str
    source_url: str

    @property
    def syncs(self) -> Path:
        return self.root / "syncs.toml"

    def people(self, *rows: tuple[int, str, str]) -> None:
        with closing(sqlite3.connect(self.root / "app.db")) as conn, conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS people (id INTEGER PRIMARY KEY, email TEXT, plan TEXT)"
            )
            conn.executemany("INSERT OR REPLACE INTO people VALUES (?, ?, ?)", rows)

    def cli(self, *argv: str, stdin: str | None = None, **env: str) -> Result:
        environment = {
            "CIO_RELAY_OUTBOX": self.outbox_url,
            "CIO_RELAY_STAMP_ENV": "false",  # the attributes as the source has them
            "COLUMNS": "200",
            **env,
        }
        return CliRunner().invoke(app, ["sync", *argv], env=environment, input=stdin)

    def enqueued(self) -> list[Operation]:
        """Every operation waiting in the outbox, taken out of it."""
        outbox = open_outbox(self.outbox_url)
        try:
            return take_all(outbox)
        finally:
            outbox.close()


@pytest.fixture
def place(tmp_path: Path) -> Place:
    here = Place(tmp_path, f"sqlite:///{tmp_path / 'outbox.db'}", f"sqlite:///{tmp_path}/app.db")
    here.people((1, "ada@example.com", "pro"), (2, "bob@example.com", "free"))
    here.syncs.write_text(
        f'[[sync]]\nname = "users"\nsource = "{here.source_url}"\ntable = "people"\n'
        "batch_size = 1\n"
    )
    return here


def test_run_enqueues_the_people_and_prints_the_summary(place: Place) -> None:
    result = place.cli("run", "users", "--syncs", str(place.syncs))

    assert result.exit_code == 0, result.output
    assert "completed" in result.output
    assert "operations enqueued" in result.output
    assert "`cio-relay run` or `cio-relay worker` delivers them" in result.output
    sent = {op.identifiers["id"]: op.payload["attributes"] for op in place.enqueued()}
    assert sent == {
        "1": {"email": "ada@example.com", "plan": "pro"},
        "2": {"email": "bob@example.com", "plan": "free"},
    }


def test_the_syncs_file_comes_from_the_setting_and_an_ad_hoc_sync_from_flags(
    place: Place,
) -> None:
    by_setting = place.cli("run", "users", CIO_RELAY_SYNCS=str(place.syncs))
    assert by_setting.exit_code == 0, by_setting.output
    assert len(place.enqueued()) == 2

    place.people((3, "cy@example.com", "pro"))
    ad_hoc = place.cli("run", "--source", place.source_url, "--table", "people", "--name", "users")
    assert ad_hoc.exit_code == 0, ad_hoc.output
    assert [op.identifiers["id"] for op in place.enqueued()] == ["3"]  # the same sync's state


def test_dry_run_and_plan_print_counts_and_samples_and_enqueue_nothing(place: Place) -> None:
    place.cli("run", "users", "--syncs", str(place.syncs))
    place.enqueued()
    place.people((2, "bob@example.com", "team"), (3, "cy@example.com", "pro"))

    for argv in (["run", "--dry-run"], ["plan"]):
        result = place.cli(*argv, "users", "--syncs", str(place.syncs))
        assert result.exit_code == 0, result.output
        assert "Dry run: nothing was enqueued." in result.output
        counts = result.output.split("plan of sync users (snapshot)")[1].splitlines()[4]
        added, changed, unchanged, invalid, removed = counts.split("│")[1:6]
        assert [int(n) for n in (added, changed, unchanged, invalid, removed)] == [1, 1, 1, 0, 0]
        assert '{"plan":"team"}' in result.output  # what the change would send
        assert place.enqueued() == []


def test_a_row_past_a_limit_is_shown_with_its_field_limit_and_size(place: Place) -> None:
    place.people((4, "dee@example.com", "x" * 1200))

    result = place.cli("run", "users", "--syncs", str(place.syncs))

    assert result.exit_code == 0, result.output
    assert "row errors: 1 of 1" in result.output
    (line,) = [line for line in result.output.splitlines() if "attributes.plan" in line]
    assert line.split()[:4] == ["4", "attributes.plan", "1,000", "1,200"]


def test_status_shows_the_runs_and_reset_makes_the_next_run_start_over(place: Place) -> None:
    place.cli("run", "users", "--syncs", str(place.syncs))
    place.enqueued()

    status = place.cli("status", "users")
    assert status.exit_code == 0, status.output
    assert "completed" in status.output
    assert "read 2 · added 2 · changed 0" in status.output
    assert "checkpoint (last key) 2" in status.output

    refused = place.cli("reset", "users", stdin="n\n")
    assert refused.exit_code == 1
    assert "Forget the 1 runs of 'users'" in refused.output
    assert "users" in place.cli("status").output

    reset = place.cli("reset", "users", "--yes")
    assert reset.exit_code == 0, reset.output
    assert "forgot 1 runs of users" in reset.output
    assert "no runs of 'users' yet" in place.cli("status", "users").output

    again = place.cli("run", "users", "--syncs", str(place.syncs))
    assert again.exit_code == 0, again.output
    # From the first row again; the people's states still say what was sent: nothing new.
    assert place.cli("status", "users").output.count("read 2 · added 0 · changed 0 · unchanged 2")
    assert place.enqueued() == []


def test_a_failed_run_exits_1_with_its_checkpoint_and_the_next_run_resumes(place: Place) -> None:
    with closing(sqlite3.connect(place.root / "app.db")) as conn, conn:
        conn.execute("CREATE TABLE profiles (id INTEGER PRIMARY KEY, doc TEXT)")
        docs = [(1, '{"plan": "pro"}'), (2, '{"plan": "free"}'), (3, "{oops"), (4, '{"plan": "x"}')]
        conn.executemany("INSERT INTO profiles VALUES (?, ?)", docs)
    query = "SELECT id, json_extract(doc, '$.plan') AS plan FROM profiles"
    place.syncs.write_text(
        f'[[sync]]\nname = "profiles"\nsource = "{place.source_url}"\nbatch_size = 1\n'
        f'query = "{query}"\n'
    )

    failed = place.cli("run", "profiles", "--syncs", str(place.syncs))
    assert failed.exit_code == 1
    assert "sync failed: OperationalError: malformed JSON" in " ".join(failed.stderr.split())
    assert "Traceback" not in failed.output
    # The batches before the bad row are committed (how far the source read ahead is its own).
    before = [op.identifiers["id"] for op in place.enqueued()]
    assert before in (["1"], ["1", "2"])
    status = place.cli("status", "profiles").output
    assert "failed" in status
    assert f"checkpoint (last key) {before[-1]}" in status
    assert "error: OperationalError: malformed JSON" in status

    with closing(sqlite3.connect(place.root / "app.db")) as conn, conn:
        conn.execute("""UPDATE profiles SET doc = '{"plan": "team"}' WHERE id = 3""")
    resumed = place.cli("run", "profiles", "--syncs", str(place.syncs))
    assert resumed.exit_code == 0, resumed.output
    after = [op.identifiers["id"] for op in place.enqueued()]
    assert before + after == ["1", "2", "3", "4"]  # resumed after its checkpoint
    assert "read 4 · added 4" in place.cli("status", "profiles").output


def test_a_source_that_cannot_be_opened_is_a_configuration_error(place: Place) -> None:
    (place.root / "app.db").rename(place.root / "moved.db")

    result = place.cli("run", "users", "--syncs", str(place.syncs))

    assert result.exit_code == 2
    assert result.stderr.startswith("configuration error: source: no SQLite file")
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["run", "users"], {}, "no syncs file to find 'users' in: set CIO_RELAY_SYNCS"),
        (["run", "users", "--syncs", "missing.toml"], {}, "syncs file missing.toml does not"),
        (["run", "nobody", "--syncs", "{syncs}"], {}, "has no sync named 'nobody' (it has: users)"),
        (["run", "--table", "people"], {}, "--table describe an ad hoc sync: give --source too"),
        (["plan", "--source", "{source}", "--mode", "sideways"], {}, "mode: Input should be"),
        (
            ["run", "--source", "mysql://ada:hunter2@db/app", "--table", "people"],
            {},
            "names no source",
        ),
        (
            ["status"],
            {"CIO_RELAY_OUTBOX": "memory://", "CIO_RELAY_ENV": "sideways"},
            "CIO_RELAY_ENV: Input should be",
        ),
    ],
)
def test_configuration_problems_are_one_line_without_a_password_or_traceback(
    place: Place, argv: list[str], env: dict[str, str], message: str
) -> None:
    values = {"syncs": str(place.syncs), "source": place.source_url}
    result = place.cli(*(arg.format(**values) for arg in argv), **env)

    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("configuration error: ")
    assert message in " ".join(result.stderr.split())
    assert "hunter2" not in result.output
    assert "Traceback" not in result.output


def test_an_outbox_that_cannot_hold_the_sync_state_is_one_line(place: Place) -> None:
    bad_file = place.root / "syncs-bad.toml"
    bad_file.write_text('[[sync]]\nname = "x"\nsource = "postgresql://a:hunter2@h/db"\nmode = 1\n')

    result = place.cli("plan", "x", "--syncs", str(bad_file))
    assert result.exit_code == 2
    assert "[[sync]] #1 (x): mode:" in result.stderr
    assert "hunter2" not in result.output

    unreachable = place.cli("status", CIO_RELAY_OUTBOX="redis://:hunter2@127.0.0.1:1/0")
    assert unreachable.exit_code == 1
    assert unreachable.stderr.startswith("error: the outbox redis://@127.0.0.1:1/0 cannot be")
    assert "hunter2" not in unreachable.output
    assert "Traceback" not in unreachable.output


def test_a_redis_outbox_is_refused_in_one_line_naming_the_setting(
    place: Place, redis_server: RedisServer, redis_namespace: str
) -> None:
    url = f"{redis_server.url}?namespace={redis_namespace}"

    result = place.cli("run", "users", "--syncs", str(place.syncs), CIO_RELAY_OUTBOX=url)

    assert result.exit_code == 2
    assert result.stderr.startswith("configuration error: user sync keeps its state")
    assert "CIO_RELAY_OUTBOX" in result.stderr
    assert "Traceback" not in result.output


def test_cio_relay_run_schedules_the_sync_and_delivers_its_people(place: Place) -> None:
    """End to end in a child process, sandbox mode: the syncs file's sync with ``every`` runs
    at start, and its people reach the bundled emulator."""
    place.syncs.write_text(
        f'[[sync]]\nname = "users"\nsource = "{place.source_url}"\ntable = "people"\nevery = 3600\n'
    )
    env = clean_env(
        CIO_RELAY_API_KEYS="cli-" + secrets.token_hex(16),
        CIO_RELAY_OUTBOX=place.outbox_url,
        CIO_RELAY_SYNCS=str(place.syncs),
    )
    child = Child(["run", "--port", "0"], cwd=place.root, env=env)
    try:
        banner = child.read_until("Delivering until Ctrl-C", START)
        emulator = re.search(r"bundled\s+emulator\s+at\s+(http://127\.0\.0\.1:\d+)", banner)
        assert emulator is not None, banner
        child.read_log_until("bulk sync users completed", START)
        with httpx.Client(base_url=emulator.group(1), timeout=10) as inspect:

            def delivered() -> bool:
                person = inspect.get("/_emulator/people/2")
                return (
                    person.status_code == 200 and person.json()["attributes"].get("plan") == "free"
                )

            assert wait_for(delivered, DELIVERY), "the synced people never reached the emulator"
    finally:
        code = child.stop(START)
    assert code == 0, child.output
    assert "bulk syncs scheduled: users every 3600 s" in child.output
