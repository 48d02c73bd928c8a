"""Configured API keys have a minimum strength; a weak one stops startup with a clear error."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from cio_relay.config import MIN_API_KEY_DISTINCT, MIN_API_KEY_LENGTH, Settings
from cio_relay.errors import ConfigError
from cio_relay.server.auth import generate_api_key

STRONG = "k-" + secrets.token_hex(16)


@pytest.mark.parametrize(
    "weak",
    [
        "s3cr3t",
        "test-" + "0" * 20,  # long enough to look safe, far too short
        "a" * 64,
        "password" * 4,  # 32 characters, 7 different ones
        "abcdefgabcdefgabcdefgabcdefgabcdefg",
    ],
)
def test_a_weak_key_is_refused_without_echoing_it(weak: str) -> None:
    with pytest.raises(ConfigError) as refused:
        Settings(api_keys=[STRONG, weak])
    # One fixed sentence: neither the key, nor a part of it, nor its length.
    assert str(refused.value) == (
        f"CIO_RELAY_API_KEYS: key 2 of 2 is too weak: a key needs at least {MIN_API_KEY_LENGTH} "
        f"characters, at least {MIN_API_KEY_DISTINCT} of them different; make one with "
        "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
    )


@pytest.mark.parametrize(
    "strong",
    [
        secrets.token_hex(16),  # 128 bits as hex: exactly the minimum length
        secrets.token_urlsafe(24),
        "3f0c1e2a-8f44-4d6b-9a6e-0f2d7c1b5e93",  # a UUID
        STRONG,
    ],
)
def test_random_keys_are_accepted(strong: str) -> None:
    assert [key.get_secret_value() for key in Settings(api_keys=strong).api_keys] == [strong]


def test_the_key_cio_relay_makes_up_passes_its_own_check() -> None:
    key = generate_api_key()
    assert len(key) >= MIN_API_KEY_LENGTH and len(set(key)) >= MIN_API_KEY_DISTINCT
    assert Settings(api_keys=key).api_keys[0].get_secret_value() == key


def test_no_keys_is_still_allowed() -> None:
    assert Settings(api_keys=[]).api_keys == []  # cio-relay run then makes one up


def test_the_cli_stops_with_one_clear_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CIO_RELAY_", "CUSTOMERIO_"))}
    env["CIO_RELAY_API_KEYS"] = f"{STRONG},hunter2-hunter2"
    done = subprocess.run(
        [sys.executable, "-m", "cio_relay", "dlq", "list"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("configuration error: CIO_RELAY_API_KEYS: key 2 of 2")
    assert "Traceback" not in done.stderr and "hunter2" not in done.stderr + done.stdout
