"""``cio-relay run`` in a child process with no Customer.io credentials (sandbox mode).

It must say it is in sandbox mode and where the dashboard is, answer ``/healthz`` over real
HTTP, deliver what its ingestion API accepts to the in-process emulator, and exit cleanly (status
0, lifespan shut down) on SIGTERM.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import httpx

from tests.cli.helpers import Child, clean_env, wait_for

START = 60.0  # seconds: a cold interpreter on a busy 2-core machine
DELIVERY = 30.0


def test_run_in_sandbox_mode_ingests_delivers_and_stops_on_sigterm(tmp_path: Path) -> None:
    api_key = "cli-" + secrets.token_hex(16)
    child = Child(["run", "--port", "0"], cwd=tmp_path, env=clean_env(CIO_RELAY_API_KEYS=api_key))
    try:
        banner = child.read_until("Delivering until Ctrl-C", START)
        assert "SANDBOX MODE" in banner
        assert "no Customer.io credentials are configured" in banner
        dashboard = re.search(r"Dashboard: (http://127\.0\.0\.1:\d+)/dashboard", banner)
        emulator = re.search(r"bundled\s+emulator\s+at\s+(http://127\.0\.0\.1:\d+)", banner)
        assert dashboard is not None and emulator is not None, banner
        base, emulator_url = dashboard.group(1), emulator.group(1)
        assert base != emulator_url
        assert "No CIO_RELAY_API_KEYS configured" not in banner  # the key came from settings

        with httpx.Client(base_url=base, timeout=10) as client:
            assert client.get("/healthz").status_code == 200
            refused = client.post("/v1/people/u-1/events", json={"name": "signed_up"})
            accepted = client.post(
                "/v1/people/u-1/events",
                json={"name": "signed_up", "data": {"plan": "pro"}},
                headers={"Authorization": f"Bearer {api_key}"},
            )
        assert refused.status_code == 401
        assert accepted.status_code == 202, accepted.text

        with httpx.Client(base_url=emulator_url, timeout=10) as inspect:

            def delivered() -> bool:
                person = inspect.get("/_emulator/people/u-1")
                return person.status_code == 200 and any(
                    event["name"] == "signed_up" for event in person.json()["events"]
                )

            assert wait_for(delivered, DELIVERY), "the event never reached the sandbox emulator"
            [event] = inspect.get("/_emulator/people/u-1").json()["events"]
        assert event["data"]["plan"] == "pro"
    finally:
        code = child.stop(START)
    assert code == 0, child.output
    assert "Application shutdown complete." in child.output  # the lifespan stopped the worker
    assert api_key not in child.output
