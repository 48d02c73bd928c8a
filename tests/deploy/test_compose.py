"""compose.yaml's stack, run without Docker: each service's command and environment as a local
process, with the service names the stack resolves (``redis``, ``emulator``, ``relay``) moved to
127.0.0.1 ports. ``scripts/check-container.sh`` validates the file itself with Docker Compose's
loader; this checks that the wiring works: the worker delivers from the shared Redis outbox to
the emulator, the service becomes ready, and the emulator's signed webhooks are accepted by the
service (the signing key is shared).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from cio_relay.cli import app
from cio_relay.config import Settings
from cio_relay.relay import Relay
from tests.cli.helpers import Child, clean_env, wait_for
from tests.fixtures.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[2]
START = 60.0  # seconds: cold interpreters on a busy 2-core machine
DELIVERY = 30.0
#: What a user sets in the shell for ``${CIO_RELAY_API_KEYS:-}``.
API_KEY = "compose-test-key-0123456789abcdefghij"
#: The ports the services listen on inside the stack.
SERVICE_PORTS = {"relay": 8080, "emulator": 8089, "redis": 6379}


def services() -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "compose.yaml").read_text())
    found: dict[str, Any] = document["services"]
    return found


def interpolated(value: str) -> str:
    """Compose's ``${NAME:-default}`` with this test's shell: only the API key is set."""
    shell = {"CIO_RELAY_API_KEYS": API_KEY}
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: shell.get(m.group(1), m.group(2)), value)


def moved(value: str, ports: dict[str, int]) -> str:
    """``//service:port`` (the stack's network) as ``//127.0.0.1:<port here>``."""
    for service, port in SERVICE_PORTS.items():
        value = value.replace(f"//{service}:{port}", f"//127.0.0.1:{ports[service]}")
    return value


def service_env(name: str, ports: dict[str, int], **extra: str) -> dict[str, str]:
    declared = services()[name]["environment"]
    env = {key: moved(interpolated(str(value)), ports) for key, value in declared.items()}
    return clean_env(**env, **extra)


def test_redis_keeps_an_append_only_file_and_never_evicts() -> None:
    command = services()["redis"]["command"]
    assert command[0] == "redis-server"
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options["--appendonly"] == "yes"
    assert options["--maxmemory-policy"] == "noeviction"


def test_the_worker_is_the_image_with_the_worker_command_and_no_http_check() -> None:
    relay, worker = services()["relay"], services()["worker"]
    assert worker["image"] == relay["image"] and worker["build"] == relay["build"] == "."
    assert relay["command"] == ["run"] and worker["command"] == ["worker"]
    assert worker["healthcheck"] == {"disable": True}
    assert worker["environment"]["CIO_RELAY_OUTBOX"] == relay["environment"]["CIO_RELAY_OUTBOX"]


@pytest.mark.parametrize("name", ["relay", "worker"])
def test_the_stack_passes_the_configuration_check(name: str) -> None:
    env = {k: v for k, v in service_env(name, SERVICE_PORTS).items() if k not in os.environ}
    result = CliRunner(env=env).invoke(app, ["config", "check", "--not-cloud-run"])
    assert result.exit_code == 0, result.output


def test_the_stack_delivers_through_the_worker_and_reports_back_to_the_service(
    redis_server_factory: Callable[..., RedisServer], tmp_path: Path
) -> None:
    redis = redis_server_factory(*services()["redis"]["command"][1:])
    ports = {"redis": redis.port, "emulator": free_port(), "relay": free_port()}
    children: list[Child] = []
    clients: list[httpx.Client] = []
    try:
        emulator_args = [
            moved(arg, ports)
            for arg in services()["emulator"]["command"]
            if not arg.startswith(("--host", "--port"))
        ]  # loopback, on a port free here
        emulator = Child(
            [*emulator_args, "--host=127.0.0.1", f"--port={ports['emulator']}"],
            cwd=tmp_path,
            env=service_env("emulator", ports),
        )
        children.append(emulator)
        emulator.read_log_until("listening on", START)
        inspect = httpx.Client(base_url=f"http://127.0.0.1:{ports['emulator']}", timeout=10)
        clients.append(inspect)

        worker = Child(["worker"], cwd=tmp_path, env=service_env("worker", ports))
        children.append(worker)
        relay_env = service_env("relay", ports)
        settings = Settings(outbox=relay_env["CIO_RELAY_OUTBOX"], data_dir=tmp_path / "producer")
        producer = Relay(settings)
        producer.track("u-1", "compose_stack_checked", {"via": "worker"})
        producer.close()

        def delivered() -> bool:
            person = inspect.get("/_emulator/people/u-1")
            return person.status_code == 200 and bool(person.json()["events"])

        assert wait_for(delivered, DELIVERY), "the worker never delivered"

        service = Child(
            ["run"],
            cwd=tmp_path,
            env={
                **relay_env,
                "CIO_RELAY_HOST": "127.0.0.1",
                "CIO_RELAY_PORT": str(ports["relay"]),
                "CIO_RELAY_DATA_DIR": str(tmp_path / "relay-data"),
            },
        )
        children.append(service)
        service.read_until("Delivering until Ctrl-C", START)
        with httpx.Client(base_url=f"http://127.0.0.1:{ports['relay']}", timeout=10) as api:
            assert api.get("/readyz").status_code == 200
            sent = api.post(
                "/v1/transactional/email",
                json={
                    "to": "ada@example.com",
                    "transactional_message_id": "welcome",
                    "identifiers": {"id": "u-1"},
                },
                headers={"Authorization": f"Bearer {API_KEY}"},
            )
        assert sent.status_code == 202, sent.text

        def emailed() -> bool:
            return bool(inspect.get("/_emulator/deliveries").json()["deliveries"])

        assert wait_for(emailed, DELIVERY), "the email was never sent"
        flushed = inspect.post(
            "/_emulator/webhooks/flush", params={"timeout": int(DELIVERY)}
        ).json()
        assert flushed["drained"] and flushed["sent"] >= 1 and flushed["failed"] == 0, flushed
    finally:
        for client in clients:
            client.close()
        codes = [child.stop(START) for child in reversed(children)][::-1]
    # The service and the worker drain and exit 0 on SIGTERM (docker stop); the emulator, a test
    # tool, just ends.
    assert codes[1:] == [0, 0], [child.output for child in children[1:]]
