"""Shared pytest fixtures and plugins for the whole suite.

``emulator``: a started ``EmulatorServer`` on a real 127.0.0.1 socket with fresh state for each
test. One server serves the session; each test gets it after ``POST /_emulator/reset`` (state,
faults and webhook log cleared), which is far faster than a server per test. Tests that need
their own configuration (a webhook URL, the EU region) start their own ``EmulatorServer``.

``tls_emulator``: the same over https with a certificate from a throwaway trustme CA; yields
``(server, ca_bundle_path)`` so a test can trust it (e.g. ``REQUESTS_CA_BUNDLE`` for the
official SDK, which only speaks https to the Track API).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from cio_relay.emulator import EmulatorConfig, EmulatorServer

pytest_plugins = ["tests.fixtures.redis_server", "tests.fixtures.postgres_server"]


#: One SSL context for every reset: httpx would otherwise load the CA bundle on each call.
_DEFAULT_TRUST = ssl.create_default_context()


def _reset(server: EmulatorServer, trust: ssl.SSLContext = _DEFAULT_TRUST) -> None:
    response = httpx.post(f"{server.url}/_emulator/reset", verify=trust, timeout=10)
    response.raise_for_status()


@pytest.fixture(scope="session")
def _emulator_session() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig()) as server:
        yield server


@pytest.fixture
def emulator(_emulator_session: EmulatorServer) -> EmulatorServer:
    """A running emulator (default ``EmulatorConfig``) with fresh state."""
    _reset(_emulator_session)
    return _emulator_session


@pytest.fixture(scope="session")
def tls_certificates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(CA bundle, server certificate chain, server key) for 127.0.0.1 and localhost."""
    directory = tmp_path_factory.mktemp("tls")
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1", "localhost")
    ca_bundle = directory / "ca.pem"
    chain = directory / "server.pem"
    key = directory / "server.key"
    authority.cert_pem.write_to_path(str(ca_bundle))
    certificate.private_key_pem.write_to_path(str(key))
    with chain.open("wb") as handle:
        for blob in certificate.cert_chain_pems:
            handle.write(blob.bytes())
    return ca_bundle, chain, key


@pytest.fixture(scope="session")
def _tls_emulator_session(
    tls_certificates: tuple[Path, Path, Path],
) -> Iterator[EmulatorServer]:
    _, chain, key = tls_certificates
    with EmulatorServer(EmulatorConfig(), ssl_certfile=str(chain), ssl_keyfile=str(key)) as server:
        yield server


@pytest.fixture(scope="session")
def _tls_trust(tls_certificates: tuple[Path, Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tls_certificates[0]))


@pytest.fixture
def tls_emulator(
    _tls_emulator_session: EmulatorServer,
    tls_certificates: tuple[Path, Path, Path],
    _tls_trust: ssl.SSLContext,
) -> tuple[EmulatorServer, str]:
    """A running https emulator with fresh state, and the CA bundle path that trusts it."""
    _reset(_tls_emulator_session, _tls_trust)
    return _tls_emulator_session, str(tls_certificates[0])
