"""``cio-relay emulator``: its help, its flag checks, and a real run in a child process."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest
from typer.testing import CliRunner

from cio_relay.cli import app

FLAGS = (
    "--host",
    "--port",
    "--site-id",
    "--track-api-key",
    "--app-api-key",
    "--webhook-url",
    "--webhook-signing-key",
    "--region",
    "--tls-cert",
    "--tls-key",
)


def test_help_documents_every_flag_and_hides_default_keys() -> None:
    result = CliRunner().invoke(app, ["emulator", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for flag in FLAGS:
        assert flag in result.output
    for env_var in ("CUSTOMERIO_SITE_ID", "CUSTOMERIO_TRACK_API_KEY", "CUSTOMERIO_APP_API_KEY"):
        assert env_var in result.output
    assert "emulator-track-key" not in result.output
    assert "emulator-app-key" not in result.output


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--region", "ap"], "must be us or eu"),
        (["--tls-cert", "cert.pem"], "give both --tls-cert and --tls-key"),
        (["--webhook-url", "http://127.0.0.1:9/h"], "give --webhook-signing-key too"),
    ],
)
def test_bad_flags_are_refused(argv: list[str], complaint: str) -> None:
    result = CliRunner().invoke(app, ["emulator", *argv], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert complaint in result.output


def test_the_command_serves_with_secrets_from_the_environment() -> None:
    env = {
        **os.environ,
        "CUSTOMERIO_SITE_ID": "cli-site",
        "CUSTOMERIO_TRACK_API_KEY": "cli-secret-track",
        "CUSTOMERIO_APP_API_KEY": "cli-secret-app",
    }
    argv = [sys.executable, "-m", "cio_relay", "emulator", "--port", "0"]
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline().decode()  # printed once the socket accepts
        assert "listening on http://127.0.0.1:" in banner
        url = banner.split("listening on ")[1].split()[0]
        with httpx.Client(base_url=url, timeout=10) as client:
            ok = client.put("/api/v1/customers/u1", json={}, auth=("cli-site", "cli-secret-track"))
            refused = client.put("/api/v1/customers/u1", json={}, auth=("cli-site", "other"))
            assert client.get("/_emulator/people/u1").status_code == 200
        assert (ok.status_code, refused.status_code) == (200, 401)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    printed = (banner.encode() + out + err).decode()
    assert "cli-secret" not in printed
