"""``cio-relay run``: the whole service in one process, sandbox mode, the printed key and URL."""

from __future__ import annotations

import io
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
from rich.console import Console

from cio_relay.config import Settings
from cio_relay.server.runner import prepare_service, print_banner
from tests.server.conftest import serve

_START_TIMEOUT = 60.0


def test_sandbox_service_delivers_to_the_emulator_and_receives_its_webhooks(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, outbox=f"sqlite:///{tmp_path}/outbox.db", api_keys=[])
    prepared = prepare_service(settings, host="127.0.0.1", port=0)
    try:
        assert prepared.sandbox is not None
        key = prepared.generated_key
        assert key is not None and key.startswith("cio_")
        service = prepared.app.state.service
        delivered = threading.Event()
        service.hooks.on_delivered(lambda op, latency: delivered.set())
        with serve(prepared.app, prepared.sock) as url:
            assert url == prepared.base_url
            headers = {"Authorization": f"Bearer {key}"}
            email = {
                "to": "ada@example.com",
                "transactional_message_id": "welcome",
                "identifiers": {"id": "u-1"},
            }
            assert (
                httpx.post(f"{url}/v1/transactional/email", json=email, headers=headers).status_code
                == 202
            )
            assert delivered.wait(30), "the worker did not deliver to the sandbox emulator"
            flushed = httpx.post(
                f"{prepared.sandbox.url}/_emulator/webhooks/flush?timeout=20", timeout=30
            )
            assert flushed.status_code == 200
            metrics = httpx.get(f"{url}/metrics", headers=headers).text
            ready = httpx.get(f"{url}/readyz").json()
    finally:
        prepared.close()
    assert 'cio_relay_webhooks_total{metric="email_sent",result="stored"} 1.0' in metrics
    assert 'cio_relay_webhooks_total{metric="email_delivered",result="stored"} 1.0' in metrics
    assert ready["status"] == "ready" and ready["checks"]["webhook_inbox"] == "ok"


def test_banner_shows_the_dashboard_url_and_the_generated_key_once(tmp_path: Path) -> None:
    prepared = prepare_service(
        Settings(
            data_dir=tmp_path, outbox="memory://", api_keys=[], site_id="s", track_api_key="k"
        ),
        host="127.0.0.1",
        port=0,
    )
    try:
        out = io.StringIO()
        print_banner(prepared, Console(file=out, width=200))
        base_url = prepared.base_url
    finally:
        prepared.close()
    text = out.getvalue()
    assert f"{base_url}/dashboard" in text
    assert text.count(prepared.generated_key or "missing") == 1
    assert "SANDBOX" not in text  # credentials were given


def _read_lines(stream: io.TextIOBase, lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


def test_cio_relay_run_serves_until_sigterm(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUSTOMERIO_", "CIO_RELAY_"))}
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cio_relay", "run", "--port", "0"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True).start()
    printed = []
    try:
        while not printed or "Delivering until Ctrl-C" not in printed[-1]:
            printed.append(lines.get(timeout=_START_TIMEOUT))
        text = "".join(printed)
        dashboard = next(word for word in text.split() if word.endswith("/dashboard"))
        key = next(word for word in text.split() if word.startswith("cio_"))
        base = dashboard.removesuffix("/dashboard")
        assert base.startswith("http://127.0.0.1:")
        assert httpx.get(f"{base}/healthz").status_code == 200
        assert httpx.get(dashboard, headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert "SANDBOX MODE" in text
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(_START_TIMEOUT)
        logs = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    assert code == 0
    assert "Application shutdown complete." in logs  # the lifespan stopped the worker
    assert key not in logs
    assert (tmp_path / "cio-relay-data" / "outbox.db").exists()
