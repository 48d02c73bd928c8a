"""Helpers for the CLI tests that run ``cio-relay`` in a child process."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def wait_for(condition: Callable[[], bool], deadline: float) -> bool:
    """Ask ``condition`` until it holds (True) or ``deadline`` seconds pass (False).

    For states only a poll can see (what a child process delivered to the emulator); each ask
    is an HTTP request or a query, so the loop paces itself without sleeping.
    """
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if condition():
            return True
    return False


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any Customer.io or cio-relay setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUSTOMERIO_", "CIO_RELAY_"))}
    env.update({"PYTHONUNBUFFERED": "1", "COLUMNS": "200"}, **extra)
    return env


def worker_env(emulator: Any, outbox_url: str, **extra: str) -> dict[str, str]:
    """``clean_env`` for a ``cio-relay worker`` delivering ``outbox_url`` to ``emulator``."""
    config = emulator.config
    return clean_env(
        CUSTOMERIO_SITE_ID=config.site_id,
        CUSTOMERIO_TRACK_API_KEY=config.track_api_key,
        CUSTOMERIO_APP_API_KEY=config.app_api_key,
        CUSTOMERIO_TRACK_URL=emulator.url,
        CUSTOMERIO_APP_URL=emulator.url,
        CIO_RELAY_OUTBOX=outbox_url,
        **extra,
    )


class Child:
    """``python -m cio_relay ARGS`` with its output read by threads, line by line.

    Both pipes are read all along, so a chatty child never blocks on a full pipe.
    """

    def __init__(self, args: list[str], *, cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cio_relay", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.lines: queue.Queue[str] = queue.Queue()
        self.log_lines: queue.Queue[str] = queue.Queue()  # stderr: where the logs go
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, True), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, False), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: IO[str], is_stdout: bool) -> None:
        for line in stream:
            if is_stdout:
                self.stdout.append(line)
                self.lines.put(line)
            else:
                self.stderr.append(line)
                self.log_lines.put(line)

    def read_until(self, marker: str, deadline: float) -> str:
        """stdout up to and including the first line containing ``marker``."""
        return self._read_until(self.lines, marker, deadline)

    def read_log_until(self, marker: str, deadline: float) -> str:
        """stderr (the logs) up to and including the first line containing ``marker``."""
        return self._read_until(self.log_lines, marker, deadline)

    @staticmethod
    def _read_until(lines: queue.Queue[str], marker: str, deadline: float) -> str:
        end = time.monotonic() + deadline
        seen: list[str] = []
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {marker!r} within {deadline} s: {''.join(seen)}")
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            seen.append(line)
            if marker in line:
                return "".join(seen)

    def stop(self, deadline: float) -> int:
        """SIGTERM, then the exit status once the child has exited and its pipes are read."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            code = self.proc.wait(deadline)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(deadline)
            raise
        for reader in self._readers:
            reader.join(deadline)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return code

    @property
    def output(self) -> str:
        return "".join(self.stdout) + "".join(self.stderr)
