"""Fixtures for the delivery tests against the emulator."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from cio_relay.emulator import EmulatorServer


@pytest.fixture
def inspect(emulator: EmulatorServer) -> Iterator[httpx.Client]:
    """An HTTP client for the emulator's inspection API (``/_emulator/``), fresh state."""
    with httpx.Client(base_url=f"{emulator.url}/_emulator", timeout=30) as client:
        yield client
