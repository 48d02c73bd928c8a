"""``cio-relay config check``: the effective settings with secrets masked, and the refusals.

Every setting is printed with the variable that sets it and where its value came from (the
environment, the profiles file and its table, or the default). Secrets (``SecretStr`` fields)
print as a fixed mask that does not even tell their length; so do passwords and secret query
parameters inside URLs (an outbox or database URL carries its password). Any configured secret
that still shows up in the rendered text (say, a key pasted into a URL path) is masked too.

Refused (exit status 1, each message naming the settings):
- a ``suppress`` bounce or spam policy without ``--confirm-suppress``: Customer.io documents
  suppress as deleting the person for good;
- a SQLite outbox on Cloud Run, whose disk is memory that goes with the instance: operations
  acknowledged to callers would be lost (contract 1); the same for ``memory://`` anywhere but
  development;
- in production: no Customer.io credentials (``run`` would deliver to the bundled emulator) or
  no ``CIO_RELAY_API_KEYS`` (each process would make up its own key);
- what the profiles file holds that is not a setting (a misspelt key leaves its default in
  force).

Production credentials outside production are refused before this module runs, by
``Settings`` itself (``main`` prints the ``ConfigError``, status 2); allowed with
``CIO_RELAY_ALLOW_PRODUCTION_CREDENTIALS`` they are a warning here. Warnings do not fail.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pydantic
from pydantic import SecretStr

from cio_relay.config import Settings, profile_file
from cio_relay.config_sources import (
    environment_variable,
    on_cloud_run,
    profile_problems,
    setting_sources,
)
from cio_relay.errors import ConfigError

__all__ = ["MASK", "Assessment", "assess", "check_configuration", "load_settings", "shown_value"]

MASK = "********"
#: URL query parameters whose values are secret (redis-py and libpq take a password there).
_SECRET_QUERY = re.compile(r"pass|secret|token|key", re.IGNORECASE)
#: A secret shorter than this is not searched for in the rendered text: it would mask
#: ordinary words. Every real credential is far longer.
_MIN_SCRUBBED_SECRET = 6


@dataclass
class Assessment:
    refusals: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def load_settings() -> Settings:
    """``Settings()``, with a malformed value reported without the value (it may be a secret)."""
    try:
        return Settings()
    except pydantic.ValidationError as exc:
        problems = [
            f"{_variable(error['loc'])}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        ]
        raise ConfigError("; ".join(problems)) from None


def _variable(location: tuple[int | str, ...]) -> str:
    """The variable a validation error's location names (pydantic gives the alias used)."""
    name = str(location[0]) if location else "?"
    return environment_variable(name) if name in Settings.model_fields else name.upper()


def masked_url(text: str) -> str:
    """``text`` with a URL's password and secret query values masked; other text unchanged."""
    try:
        parts = urlsplit(text)
    except ValueError:  # not a URL after all, but it may hold a password: show none of it
        return MASK
    if not parts.scheme or not parts.netloc:
        return text
    netloc = parts.netloc
    if parts.password is not None:
        user = parts.username or ""
        netloc = f"{user}:{MASK}@{netloc.rpartition('@')[2]}"
    query = urlencode(
        [
            (name, MASK if _SECRET_QUERY.search(name) else value)
            for name, value in parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="*/:",
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def shown_value(value: object) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(shown_value(item) for item in value) or "(none)"
    if isinstance(value, str):
        return masked_url(value)
    return str(value)


def _suppress_refusals(settings: Settings, confirmed: bool) -> list[str]:
    chosen = [
        environment_variable(name)
        for name in ("bounce_policy", "spam_policy")
        if getattr(settings, name) == "suppress"
    ]
    if not chosen or confirmed:
        return []
    return [
        f"{' and '.join(chosen)}=suppress deletes people at Customer.io for good (Track "
        "suppress); run the check with --confirm-suppress if that is intended, or choose "
        "record or unsubscribe"
    ]


def _storage_refusals(settings: Settings, cloud_run: bool) -> list[str]:
    outbox = settings.outbox_url
    if cloud_run and outbox.startswith("sqlite:"):
        where = (
            "CIO_RELAY_OUTBOX"
            if settings.outbox
            else "CIO_RELAY_OUTBOX (unset: CIO_RELAY_DATA_DIR)"
        )
        return [
            f"{where}: a SQLite outbox on Cloud Run lives on the instance's in-memory disk and "
            "is lost with it, with every operation already acknowledged; use a Redis outbox "
            "(redis:// or rediss://)"
        ]
    if outbox.startswith("memory:") and settings.env != "development":
        return [
            f"CIO_RELAY_OUTBOX: a memory outbox in {settings.env} loses every acknowledged "
            "operation when the process stops; it is for development and tests"
        ]
    return []


def _production_refusals(settings: Settings) -> list[str]:
    if settings.env != "production":
        return []
    refusals = []
    if not settings.has_track_credentials and settings.app_api_key is None:
        refusals.append(
            "CIO_RELAY_ENV=production without CUSTOMERIO_SITE_ID, CUSTOMERIO_TRACK_API_KEY or "
            "CUSTOMERIO_APP_API_KEY: cio-relay run would deliver to the bundled emulator"
        )
    if not settings.api_keys:
        refusals.append(
            "CIO_RELAY_ENV=production without CIO_RELAY_API_KEYS: every process would make up "
            "its own key and print it"
        )
    return refusals


def _warnings(settings: Settings, cloud_run: bool) -> list[str]:
    warnings = []
    if (
        settings.env != "production"
        and settings.allow_production_credentials
        and settings.site_id in settings.production_site_ids
    ):
        warnings.append(
            f"CIO_RELAY_ALLOW_PRODUCTION_CREDENTIALS lets this {settings.env} relay use the "
            "production site id (CUSTOMERIO_SITE_ID)"
        )
    if (
        settings.env != "production"
        and settings.has_track_credentials
        and not settings.production_site_ids
    ):
        warnings.append(
            f"CIO_RELAY_PRODUCTION_SITE_IDS is empty: this {settings.env} relay cannot tell "
            "production credentials from its own"
        )
    if cloud_run and not settings.lake and not settings.bigquery_table:
        warnings.append(
            "CIO_RELAY_LAKE and CIO_RELAY_BIGQUERY_TABLE are unset: on Cloud Run the Parquet "
            "lake in CIO_RELAY_DATA_DIR is per instance and goes with it"
        )
    return warnings


def assess(settings: Settings, *, cloud_run: bool, confirm_suppress: bool) -> Assessment:
    """The refusals and warnings for ``settings``; see the module docstring."""
    return Assessment(
        refusals=[
            *profile_problems(),
            *_suppress_refusals(settings, confirm_suppress),
            *_storage_refusals(settings, cloud_run),
            *_production_refusals(settings),
        ],
        warnings=_warnings(settings, cloud_run),
    )


def settings_table(settings: Settings, sources: Mapping[str, str]) -> list[str]:
    rows = [
        (environment_variable(name), shown_value(getattr(settings, name)), sources[name])
        for name in Settings.model_fields
    ]
    rows.sort()
    width = max(len(variable) for variable, _, _ in rows)
    return [f"{variable:<{width}}  {value}  ({source})" for variable, value, source in rows]


def _scrub(text: str, settings: Settings) -> str:
    for secret in settings.secret_values():
        if len(secret) >= _MIN_SCRUBBED_SECRET:
            text = text.replace(secret, MASK)
    return text


def check_configuration(
    echo: Callable[[str, bool], None], *, cloud_run: bool | None, confirm_suppress: bool
) -> int:
    """Print the effective settings and the assessment through ``echo(text, to_stderr)``;
    return the exit status (1 when something is refused)."""
    settings = load_settings()
    cloud_run = on_cloud_run() if cloud_run is None else cloud_run
    path: Path | None = profile_file()
    profile = f"profiles file {path}" if path else "no profiles file"
    echo(f"cio-relay {settings.env} configuration ({profile}; Cloud Run: {cloud_run})", False)
    echo(_scrub("\n".join(settings_table(settings, setting_sources())), settings), False)
    assessment = assess(settings, cloud_run=cloud_run, confirm_suppress=confirm_suppress)
    for warning in assessment.warnings:
        echo(_scrub(f"warning: {warning}", settings), True)
    for refusal in assessment.refusals:
        echo(_scrub(f"refused: {refusal}", settings), True)
    if assessment.refusals:
        return 1
    echo("configuration accepted", False)
    return 0
