"""Shared benchmark plumbing: free ports, the emulator as a separate process, bounded waits,
a process's CPU time."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["BENCH_KEYS", "cpu_seconds", "free_port", "start_emulator", "wait_for"]

BENCH_KEYS = {
    "site_id": "bench-site",
    "track_api_key": "bench-track-key",
    "app_api_key": "bench-app-key",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    predicate: Callable[[], bool], deadline: float, what: str, interval: float = 0.02
) -> None:
    """Poll ``predicate`` until true; a benchmark (never a test) may poll a remote counter."""
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            raise TimeoutError(f"gave up waiting for {what} after {deadline:.0f} s")
        time.sleep(interval)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, all its threads (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@contextmanager
def start_emulator(port: int, *extra: str) -> Iterator[str]:
    """``cio-relay emulator`` in its own process on 127.0.0.1; yields its base URL."""
    argv = [
        sys.executable,
        "-m",
        "cio_relay",
        "emulator",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--site-id",
        BENCH_KEYS["site_id"],
        "--track-api-key",
        BENCH_KEYS["track_api_key"],
        "--app-api-key",
        BENCH_KEYS["app_api_key"],
        *extra,
    ]
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ)
    )
    try:
        wait_for(lambda: _accepts(port), 30, "the emulator to listen")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)
