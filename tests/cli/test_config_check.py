"""``cio-relay config check``: effective settings with their sources, secrets masked, refusals.

Each refusal exits non-zero with a message naming the settings; the worked example of
docs/configuration.md passes the check in every environment it describes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from cio_relay.cli import app
from cio_relay.cli.config_check import MASK, masked_url
from cio_relay.config import Settings
from cio_relay.errors import ConfigError
from tests.cli.helpers import clean_env

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "k3y-for-the-ingestion-api-0123456789abcdef"
PRODUCTION_SITE = "prod-site-9f8e7d"


@pytest.fixture(autouse=True)
def _no_settings_from_this_machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("CUSTOMERIO_", "CIO_RELAY_")) or name in ("K_SERVICE", "CLOUD_RUN_JOB"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no cio-relay.toml unless a test writes one


def check(*args: str, **env: str) -> Result:
    return CliRunner(env={"COLUMNS": "200", **env}).invoke(app, ["config", "check", *args])


def line_of(result: Result, variable: str) -> str:
    [line] = [line for line in result.stdout.splitlines() if line.startswith(variable + " ")]
    return " ".join(line.split())


def production_env(**extra: str) -> dict[str, str]:
    return {
        "CIO_RELAY_ENV": "production",
        "CUSTOMERIO_SITE_ID": PRODUCTION_SITE,
        "CUSTOMERIO_TRACK_API_KEY": "track-key-7a6b5c4d3e2f",
        "CUSTOMERIO_APP_API_KEY": "app-key-1f2e3d4c5b6a",
        "CIO_RELAY_API_KEYS": API_KEY,
        "CIO_RELAY_OUTBOX": "redis://outbox.internal:6379/0",
        **extra,
    }


def test_every_setting_is_printed_with_where_its_value_came_from(tmp_path: Path) -> None:
    (tmp_path / "cio-relay.toml").write_text(
        'region = "eu"\ntrack_rate = 50\n\n[staging]\ntrack_rate = 20\n'
    )
    result = check(CIO_RELAY_ENV="staging", CUSTOMERIO_SITE_ID="staging-site")
    assert result.exit_code == 0, result.output
    assert line_of(result, "CUSTOMERIO_REGION") == "CUSTOMERIO_REGION eu (cio-relay.toml)"
    assert line_of(result, "CIO_RELAY_TRACK_RATE") == (
        "CIO_RELAY_TRACK_RATE 20.0 (cio-relay.toml [staging])"
    )
    assert line_of(result, "CUSTOMERIO_SITE_ID") == "CUSTOMERIO_SITE_ID staging-site (environment)"
    assert line_of(result, "CIO_RELAY_MAX_ATTEMPTS") == "CIO_RELAY_MAX_ATTEMPTS 15 (default)"
    shown = [line for line in result.stdout.splitlines() if re.match(r"[A-Z_]+ ", line)]
    assert len(shown) == len(Settings.model_fields)
    assert "configuration accepted" in result.stdout


def test_environment_variables_win_over_the_profile(tmp_path: Path) -> None:
    (tmp_path / "cio-relay.toml").write_text("track_rate = 50\n\n[staging]\ntrack_rate = 20\n")
    result = check(CIO_RELAY_ENV="staging", CIO_RELAY_TRACK_RATE="30")
    assert line_of(result, "CIO_RELAY_TRACK_RATE") == "CIO_RELAY_TRACK_RATE 30.0 (environment)"


def test_cio_relay_config_names_the_profiles_file(tmp_path: Path) -> None:
    profiles = tmp_path / "etc" / "relay.toml"
    profiles.parent.mkdir()
    profiles.write_text("[development]\nmax_attempts = 7\n")
    result = check(CIO_RELAY_CONFIG=str(profiles))
    assert line_of(result, "CIO_RELAY_MAX_ATTEMPTS") == (
        f"CIO_RELAY_MAX_ATTEMPTS 7 ({profiles} [development])"
    )


def test_a_profiles_file_that_is_not_there_is_an_error_not_the_defaults(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cio_relay", "config", "check"],
        env=clean_env(CIO_RELAY_CONFIG=str(tmp_path / "missing.toml")),
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "CIO_RELAY_CONFIG" in done.stderr and "is not a file" in done.stderr


def test_no_secret_appears_in_the_output(tmp_path: Path) -> None:
    secrets = {
        "track": "track-secret-5e4d3c2b1a",
        "app": "app-secret-0a1b2c3d4e",
        "hook_old": "hook-secret-old-99887766",
        "hook_new": "hook-secret-new-55443322",
        "redis": "redis-password-31415926",
        "redis_query": "redis-query-secret-2718",
        "users_db": "postgres-password-16180",
    }
    (tmp_path / "cio-relay.toml").write_text(
        f'[production]\ntrack_api_key = "{secrets["track"]}"\n'
    )
    result = check(
        "--cloud-run",  # to print refusals and warnings as well
        **production_env(
            CUSTOMERIO_TRACK_API_KEY="",  # from the file
            CUSTOMERIO_APP_API_KEY=secrets["app"],
            CUSTOMERIO_WEBHOOK_SIGNING_KEY=f"{secrets['hook_old']},{secrets['hook_new']}",
            CIO_RELAY_OUTBOX=(
                f"rediss://relay:{secrets['redis']}@outbox.internal:6378/0"
                f"?password={secrets['redis_query']}&ssl_ca_certs=/secrets/ca.pem"
            ),
            CIO_RELAY_USERS_DB=f"postgresql://relay:{secrets['users_db']}@db/relay",
            # A key pasted where no one expects a secret is masked all the same.
            CUSTOMERIO_APP_URL=f"http://emulator.internal/{secrets['app']}",
            CIO_RELAY_BOUNCE_POLICY="suppress",
        ),
    )
    assert result.exit_code == 1  # suppress without confirmation: the refusals printed too
    for name, secret in [*secrets.items(), ("api key", API_KEY)]:
        assert secret not in result.output, name
    assert line_of(result, "CUSTOMERIO_TRACK_API_KEY") == (
        f"CUSTOMERIO_TRACK_API_KEY {MASK} (cio-relay.toml [production])"
    )
    assert line_of(result, "CUSTOMERIO_WEBHOOK_SIGNING_KEY").startswith(
        f"CUSTOMERIO_WEBHOOK_SIGNING_KEY {MASK}, {MASK} "
    )
    outbox = line_of(result, "CIO_RELAY_OUTBOX")
    assert f"rediss://relay:{MASK}@outbox.internal:6378/0?password={MASK}" in outbox
    assert "ssl_ca_certs=/secrets/ca.pem" in outbox  # what is not secret stays readable


@pytest.mark.parametrize("variable", ["CIO_RELAY_BOUNCE_POLICY", "CIO_RELAY_SPAM_POLICY"])
def test_a_suppress_policy_needs_confirmation(variable: str) -> None:
    refused = check(**{variable: "suppress"})
    assert refused.exit_code == 1
    assert f"refused: {variable}=suppress" in refused.stderr
    assert "configuration accepted" not in refused.stdout
    confirmed = check("--confirm-suppress", **{variable: "suppress"})
    assert confirmed.exit_code == 0, confirmed.output


def test_a_sqlite_outbox_is_refused_on_cloud_run() -> None:
    default = check(K_SERVICE="cio-relay-api", CIO_RELAY_DATA_DIR="/var/lib/cio-relay/data")
    assert default.exit_code == 1
    assert "refused: CIO_RELAY_OUTBOX (unset: CIO_RELAY_DATA_DIR)" in default.stderr
    named = check("--cloud-run", CIO_RELAY_OUTBOX="sqlite:///var/lib/cio-relay/outbox.db")
    assert named.exit_code == 1 and "refused: CIO_RELAY_OUTBOX: a SQLite outbox" in named.stderr
    redis = check(K_SERVICE="cio-relay-api", CIO_RELAY_OUTBOX="rediss://outbox.internal:6378/0")
    assert redis.exit_code == 0, redis.output
    not_cloud_run = check("--not-cloud-run", K_SERVICE="cio-relay-api")
    assert not_cloud_run.exit_code == 0, not_cloud_run.output


def test_a_memory_outbox_is_refused_outside_development() -> None:
    assert check(CIO_RELAY_OUTBOX="memory://").exit_code == 0
    staging = check(CIO_RELAY_ENV="staging", CIO_RELAY_OUTBOX="memory://")
    assert staging.exit_code == 1 and "refused: CIO_RELAY_OUTBOX: a memory outbox" in staging.stderr


def test_production_credentials_outside_production_are_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cio_relay", "config", "check"],
        env=clean_env(
            CIO_RELAY_ENV="staging",
            CUSTOMERIO_SITE_ID=PRODUCTION_SITE,
            CIO_RELAY_PRODUCTION_SITE_IDS=f"other-site,{PRODUCTION_SITE}",
        ),
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    message = " ".join(done.stderr.split())
    assert "staging relay refuses the production site id" in message
    assert "CUSTOMERIO_SITE_ID" in message and "CIO_RELAY_PRODUCTION_SITE_IDS" in message


def test_production_credentials_allowed_outside_production_are_a_warning() -> None:
    allowed = check(
        CIO_RELAY_ENV="staging",
        CUSTOMERIO_SITE_ID=PRODUCTION_SITE,
        CIO_RELAY_PRODUCTION_SITE_IDS=PRODUCTION_SITE,
        CIO_RELAY_ALLOW_PRODUCTION_CREDENTIALS="1",
    )
    assert allowed.exit_code == 0
    assert "warning: CIO_RELAY_ALLOW_PRODUCTION_CREDENTIALS lets this staging relay" in (
        allowed.stderr
    )


def test_production_needs_customerio_credentials_and_api_keys() -> None:
    assert check(**production_env()).exit_code == 0
    sandbox = check(
        **production_env(
            CUSTOMERIO_SITE_ID="", CUSTOMERIO_TRACK_API_KEY="", CUSTOMERIO_APP_API_KEY=""
        )
    )
    assert sandbox.exit_code == 1
    assert "refused: CIO_RELAY_ENV=production without CUSTOMERIO_SITE_ID" in sandbox.stderr
    keyless = check(**production_env(CIO_RELAY_API_KEYS=""))
    assert keyless.exit_code == 1
    assert "refused: CIO_RELAY_ENV=production without CIO_RELAY_API_KEYS" in keyless.stderr


def test_what_the_profiles_file_holds_that_is_not_a_setting_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cio-relay.toml").write_text(
        'log_levl = "DEBUG"\n\n[staging]\nbounce_polcy = "suppress"\n\n[prod]\nregion = "eu"\n'
    )
    result = check()
    assert result.exit_code == 1
    refusals = [line for line in result.stderr.splitlines() if line.startswith("refused:")]
    assert refusals == [
        "refused: cio-relay.toml: log_levl is not a setting",
        "refused: cio-relay.toml: [staging] bounce_polcy is not a setting",
        "refused: cio-relay.toml: [prod] is not an environment (development, staging, production)",
    ]


def documented_profiles() -> str:
    """The worked example of docs/configuration.md (its first toml block)."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    found = re.search(r"```toml\n(.*?)```", text, re.DOTALL)
    assert found is not None, "docs/configuration.md has no toml example"
    return found.group(1)


@pytest.mark.parametrize(
    ("env", "extra_args"),
    [
        ({}, ()),
        (
            {
                "CIO_RELAY_ENV": "staging",
                "CUSTOMERIO_SITE_ID": "staging-site",
                "CUSTOMERIO_TRACK_API_KEY": "staging-track-key",
                "CIO_RELAY_OUTBOX": "rediss://outbox.internal:6378/0",
                "K_SERVICE": "cio-relay-api",
            },
            (),
        ),
        (production_env(K_SERVICE="cio-relay-api"), ("--confirm-suppress",)),
    ],
    ids=["development", "staging", "production"],
)
def test_the_documented_profiles_pass_the_check(
    tmp_path: Path, env: dict[str, str], extra_args: tuple[str, ...]
) -> None:
    profiles = documented_profiles()
    (tmp_path / "cio-relay.toml").write_text(profiles)
    result = check(*extra_args, **env)
    assert result.exit_code == 0, result.output
    assert not [line for line in result.stderr.splitlines() if line.startswith("warning")]
    # The production site id listed in the example is refused outside production.
    listed = re.search(r'production_site_ids = \["([^"]+)"\]', profiles)
    assert listed is not None
    staging = dict(env, CIO_RELAY_ENV="staging", CUSTOMERIO_SITE_ID=listed.group(1))
    with pytest.raises(ConfigError, match="staging relay refuses the production site id"):
        _settings_with(staging)


def _settings_with(env: dict[str, str]) -> Settings:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        return Settings()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@h:6379/0", f"redis://:{MASK}@h:6379/0"),
        (
            "postgresql://u:s3cret@db/x?sslpassword=s3cret&x=1",
            f"postgresql://u:{MASK}@db/x?sslpassword={MASK}&x=1",
        ),
        ("http://[s3cret", MASK),  # not parseable: nothing of it is shown
        ("sqlite:///var/lib/cio-relay/outbox.db", "sqlite:///var/lib/cio-relay/outbox.db"),
    ],
)
def test_urls_show_no_password(url: str, shown: str) -> None:
    assert masked_url(url) == shown
