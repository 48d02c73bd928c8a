"""A real BigQuery emulator for tests: ``bqemulator`` from its own venv, ``.venv-bqemulator``.

bqemulator needs DuckDB 1.x with the spatial extension, which it would download at start; the
venv made by ``scripts/tool-venv-bqemulator.sh`` (``make tool-venvs``, run by ``make test``)
pins DuckDB 1.5.5 and the wheel that bundles the extension, installed here before the emulator
starts. A missing venv fails the test with the command that makes it: never a skip.

The emulator binds a port of the system's choosing on 127.0.0.1 and logs it (``rest.listen``);
that line is the readiness event, awaited with a deadline.
"""

from __future__ import annotations

import json
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV_PYTHON = ROOT / ".venv-bqemulator" / "bin" / "python"
PROJECT = "cio-relay-test"
_START_SECONDS = 90.0
_LAUNCH = (
    "import sys, duckdb_extensions\n"
    "duckdb_extensions.import_extension('spatial')\n"
    "from bqemulator.cli import main\n"
    "sys.argv[0] = 'bqemulator'\n"
    "main()\n"
)


class BigQueryEmulator:
    """One bqemulator process (REST on 127.0.0.1, ephemeral storage)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.url = ""
        self.log: list[str] = []
        self._proc: subprocess.Popen[str] | None = None
        self._listening = threading.Event()
        self._reader: threading.Thread | None = None

    def start(self) -> BigQueryEmulator:
        if not VENV_PYTHON.exists():
            pytest.fail(
                f"{VENV_PYTHON.parent.parent.name} is missing: run `make tool-venvs` "
                "(or `bash scripts/tool-venv-bqemulator.sh`) to make it"
            )
        argv = [str(VENV_PYTHON), "-c", _LAUNCH, "start", "--rest-host", "127.0.0.1"]
        argv += ["--rest-port", "0", "--grpc-port", "0", "--ephemeral", "--project", PROJECT]
        self._proc = subprocess.Popen(
            argv,
            cwd=self.directory,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read_log, args=(self._proc,), daemon=True)
        self._reader.start()
        if not self._listening.wait(_START_SECONDS) or not self.url:
            self.stop()
            pytest.fail("bqemulator did not start:\n" + "\n".join(self.log[-30:]))
        return self

    def _read_log(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.log.append(line.rstrip())
            if not self.url and '"rest.listen"' in line:
                event = json.loads(line)
                self.url = f"http://127.0.0.1:{event['port']}"
                self._listening.set()
        self._listening.set()  # the process ended: stop waiting

    def client(self) -> Any:
        from cio_relay.lake.bigquery_jobs import TableName, connect_client

        return connect_client(TableName(f"{PROJECT}.any.any"), emulator=self.url)

    def stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._reader is not None:
            self._reader.join(5)  # the log reaches its end once the process is gone
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture(scope="session")
def bigquery_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BigQueryEmulator]:
    emulator = BigQueryEmulator(tmp_path_factory.mktemp("bqemulator")).start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def bigquery_dataset(bigquery_emulator: BigQueryEmulator) -> Iterator[str]:
    """A fresh dataset for the test, ``project.dataset``; deleted after it."""
    client = bigquery_emulator.client()
    name = f"{PROJECT}.test_{uuid.uuid4().hex[:12]}"
    client.create_dataset(name)
    try:
        yield name
    finally:
        client.delete_dataset(name, delete_contents=True, not_found_ok=True)
