"""``cio-relay emulator`` warns when it binds beyond loopback (its /_emulator/ API needs no key).

The server itself is replaced by a stand-in that records where it was asked to listen, so no
test opens a port on every interface.
"""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

import cio_relay.emulator
from cio_relay.cli import app

WARNING = "WARNING: the emulator binds"


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    hosts: list[str] = []

    def stand_in(config: Any, *, host: str, **options: Any) -> None:
        hosts.append(host)

    monkeypatch.setattr(cio_relay.emulator, "serve_forever", stand_in)
    return hosts


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "[::]", "emulator.internal"])
def test_a_host_beyond_loopback_is_warned_about(served: list[str], host: str) -> None:
    result = CliRunner().invoke(app, ["emulator", "--host", host])
    assert result.exit_code == 0, result.output
    assert served == [host]  # a warning, not a refusal: a shared test network is legitimate
    assert WARNING in result.output
    assert "/_emulator/" in result.output and "needs no credentials" in result.output


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_starts_quietly(served: list[str], host: str) -> None:
    result = CliRunner().invoke(app, ["emulator", "--host", host])
    assert result.exit_code == 0, result.output
    assert served == [host]
    assert WARNING not in result.output
