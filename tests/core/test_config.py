"""Settings: environment variables, the TOML file, regions, secrets masked, environment guard."""

from __future__ import annotations

from pathlib import Path

import pytest

from cio_relay.config import Settings
from cio_relay.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [
        "CUSTOMERIO_SITE_ID",
        "CUSTOMERIO_TRACK_API_KEY",
        "CUSTOMERIO_APP_API_KEY",
        "CUSTOMERIO_REGION",
        "CUSTOMERIO_WEBHOOK_SIGNING_KEY",
        "CUSTOMERIO_TRACK_URL",
        "CUSTOMERIO_APP_URL",
        "CIO_RELAY_ENV",
        "CIO_RELAY_OUTBOX",
        "CIO_RELAY_API_KEYS",
    ]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_environment_variables_use_the_reference_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTOMERIO_SITE_ID", "site-1")
    monkeypatch.setenv("CUSTOMERIO_TRACK_API_KEY", "track-secret")
    monkeypatch.setenv("CUSTOMERIO_REGION", "eu")
    monkeypatch.setenv("CUSTOMERIO_WEBHOOK_SIGNING_KEY", "old-key, new-key")
    settings = Settings()
    assert settings.site_id == "site-1"
    assert settings.track_base_url == "https://track-eu.customer.io"
    assert settings.app_base_url == "https://api-eu.customer.io"
    keys = [k.get_secret_value() for k in settings.webhook_signing_keys]
    assert keys == ["old-key", "new-key"]


def test_base_url_overrides_win_over_the_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTOMERIO_TRACK_URL", "http://127.0.0.1:9000/")
    assert Settings().track_base_url == "http://127.0.0.1:9000"
    assert Settings().app_base_url == "https://api.customer.io"


def test_secrets_are_masked_in_repr_and_str(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTOMERIO_TRACK_API_KEY", "track-secret")
    monkeypatch.setenv("CUSTOMERIO_APP_API_KEY", "app-secret")
    monkeypatch.setenv("CUSTOMERIO_WEBHOOK_SIGNING_KEY", "hook-secret")
    monkeypatch.setenv("CIO_RELAY_API_KEYS", "ingest-secret-0123456789abcdefghij")
    settings = Settings()
    for text in (repr(settings), str(settings), str(settings.model_dump())):
        for secret in ("track-secret", "app-secret", "hook-secret", "ingest-secret"):
            assert secret not in text


def test_toml_file_per_environment_and_env_vars_win(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "cio-relay.toml").write_text(
        'region = "eu"\ntrack_rate = 50\n\n[staging]\ntrack_rate = 20\nsite_id = "staging-site"\n'
    )
    assert Settings().track_rate == 50
    monkeypatch.setenv("CIO_RELAY_ENV", "staging")
    staged = Settings()
    assert (staged.env, staged.track_rate, staged.site_id, staged.region) == (
        "staging",
        20,
        "staging-site",
        "eu",
    )
    monkeypatch.setenv("CUSTOMERIO_SITE_ID", "from-env")
    assert Settings().site_id == "from-env"


def test_staging_refuses_production_credentials_unless_allowed() -> None:
    with pytest.raises(ConfigError, match="staging relay refuses the production site id"):
        Settings(env="staging", site_id="prod-site", production_site_ids=["prod-site"])
    allowed = Settings(
        env="staging",
        site_id="prod-site",
        production_site_ids=["prod-site"],
        allow_production_credentials=True,
    )
    assert allowed.site_id == "prod-site"
    assert Settings(env="production", site_id="prod-site", production_site_ids=["prod-site"])


def test_embedded_defaults_live_in_the_data_dir() -> None:
    settings = Settings()
    assert settings.outbox_url == "sqlite:///cio-relay-data/outbox.db"
    assert settings.lake_url == "cio-relay-data/lake"
    assert settings.host == "127.0.0.1"


@pytest.mark.parametrize(
    ("retired", "replacement"),
    [
        ("CIO_RELAY_WEBHOOK_SUPPRESS_ON_BOUNCE", "CIO_RELAY_BOUNCE_POLICY"),
        ("CIO_RELAY_WEBHOOK_SUPPRESS_ON_SPAM", "CIO_RELAY_SPAM_POLICY"),
    ],
)
def test_a_retired_suppress_switch_is_refused_not_ignored(
    monkeypatch: pytest.MonkeyPatch, retired: str, replacement: str
) -> None:
    monkeypatch.setenv(retired, "true")
    with pytest.raises(ConfigError, match=f"{retired} was retired: set {replacement}"):
        Settings()
