"""Typed settings: the only place that reads the environment.

Names follow the reference architecture's deployment: ``CUSTOMERIO_*`` for Customer.io,
``CIO_RELAY_*`` for the relay. A ``cio-relay.toml`` (in the working directory, or the file
``CIO_RELAY_CONFIG`` names) may hold the same settings (lower-case field names) at the top level
and per environment under ``[development]``, ``[staging]``, ``[production]``; environment
variables win over the file, and the file's environment table wins over its top level.
config_sources.py tells ``cio-relay config check`` where each value came from and what in the
file is not a setting.

Secrets are ``SecretStr``: their repr and str are masked, so a logged ``Settings`` leaks nothing.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from cio_relay.errors import ConfigError

__all__ = [
    "DELIVERY_HEALTH_POLICIES",
    "ENVIRONMENTS",
    "MIN_API_KEY_DISTINCT",
    "MIN_API_KEY_LENGTH",
    "PROFILE_FILE",
    "REGION_URLS",
    "DeliveryHealthPolicy",
    "Environment",
    "Region",
    "Settings",
    "profile_file",
    "profile_layers",
]

Region = Literal["us", "eu"]
Environment = Literal["development", "staging", "production"]
ENVIRONMENTS: tuple[Environment, ...] = ("development", "staging", "production")
#: The profiles file read from the working directory when ``CIO_RELAY_CONFIG`` names none.
PROFILE_FILE = Path("cio-relay.toml")
#: Settings that no longer exist, and what replaced them (refused rather than ignored).
_POLICIES = "record, unsubscribe or suppress"
RETIRED_SETTINGS = {
    "CIO_RELAY_WEBHOOK_SUPPRESS_ON_BOUNCE": f"CIO_RELAY_BOUNCE_POLICY ({_POLICIES})",
    "CIO_RELAY_WEBHOOK_SUPPRESS_ON_SPAM": f"CIO_RELAY_SPAM_POLICY ({_POLICIES})",
}

#: What the built-in bounce/spam handlers do: see ``Settings.bounce_policy``.
DeliveryHealthPolicy = Literal["record", "unsubscribe", "suppress"]
DELIVERY_HEALTH_POLICIES: tuple[DeliveryHealthPolicy, ...] = ("record", "unsubscribe", "suppress")
#: Webhook bodies are kept whole up to this size; a larger authentic one is stored with its
#: event's fields and marked truncated (webhooks/intake.py), never refused for its size.
DEFAULT_WEBHOOK_MAX_BODY = 16 * 1024 * 1024

#: Base URLs per region; only the subdomain differs (customerio-api.md §1).
REGION_URLS: dict[str, dict[str, str]] = {
    "us": {"track": "https://track.customer.io", "app": "https://api.customer.io"},
    "eu": {"track": "https://track-eu.customer.io", "app": "https://api-eu.customer.io"},
}

DEFAULT_DATA_DIR = Path("cio-relay-data")

#: A configured API key (``CIO_RELAY_API_KEYS``) needs at least this many characters: 32 hex
#: digits are 128 bits, 32 base64 characters 192; ``cio-relay run`` makes 256-bit keys itself.
MIN_API_KEY_LENGTH = 32
#: ... of which at least this many different ones: refuses "aaaa..." and a short word repeated,
#: while a random key passes (32 random hex digits have fewer than 8 different ones about once
#: in 28 million keys; base64 ones about once in 10^22).
MIN_API_KEY_DISTINCT = 8


def _env(*names: str) -> Any:
    return AliasChoices(*names)


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def profile_file() -> Path | None:
    """The profiles file in force: the one ``CIO_RELAY_CONFIG`` names (it must exist: a typo
    must not fall back to defaults), else ``cio-relay.toml`` if there is one."""
    named = os.environ.get("CIO_RELAY_CONFIG")
    if named:
        if not Path(named).is_file():
            raise ConfigError(f"CIO_RELAY_CONFIG: {named} is not a file")
        return Path(named)
    return PROFILE_FILE if PROFILE_FILE.is_file() else None


def profile_layers(path: Path) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """The file's top-level settings, the environment in force, and that environment's table."""
    try:
        document = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    top = {k: v for k, v in document.items() if not isinstance(v, dict)}
    env_name = str(os.environ.get("CIO_RELAY_ENV") or top.get("env", "development"))
    table = document.get(env_name, {})
    return top, env_name, table if isinstance(table, dict) else {}


class _TomlSource(PydanticBaseSettingsSource):
    """The profiles file: top-level keys, then the table named after the environment."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # pragma: no cover - __call__ does the work

    def __call__(self) -> dict[str, Any]:
        path = profile_file()
        if path is None:
            return {}
        top, _, table = profile_layers(path)
        return {**top, **table}


class Settings(BaseSettings):
    """Every setting of cio-relay, with the environment variable that sets it."""

    model_config = SettingsConfigDict(
        populate_by_name=True, extra="ignore", frozen=True, env_ignore_empty=True
    )

    # --- Customer.io --------------------------------------------------------------------------
    site_id: str | None = Field(None, validation_alias=_env("CUSTOMERIO_SITE_ID", "site_id"))
    track_api_key: SecretStr | None = Field(
        None, validation_alias=_env("CUSTOMERIO_TRACK_API_KEY", "track_api_key")
    )
    app_api_key: SecretStr | None = Field(
        None, validation_alias=_env("CUSTOMERIO_APP_API_KEY", "app_api_key")
    )
    region: Region = Field("us", validation_alias=_env("CUSTOMERIO_REGION", "region"))
    track_url: str | None = Field(None, validation_alias=_env("CUSTOMERIO_TRACK_URL", "track_url"))
    app_url: str | None = Field(None, validation_alias=_env("CUSTOMERIO_APP_URL", "app_url"))
    webhook_signing_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        validation_alias=_env("CUSTOMERIO_WEBHOOK_SIGNING_KEY", "webhook_signing_keys"),
    )
    http_timeout: float = Field(
        10.0, validation_alias=_env("CIO_RELAY_HTTP_TIMEOUT", "http_timeout")
    )

    # --- the relay ----------------------------------------------------------------------------
    env: Environment = Field("development", validation_alias=_env("CIO_RELAY_ENV", "env"))
    stamp_env: bool = Field(True, validation_alias=_env("CIO_RELAY_STAMP_ENV", "stamp_env"))
    #: Site ids known to be production; a non-production relay refuses them unless allowed.
    production_site_ids: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=_env("CIO_RELAY_PRODUCTION_SITE_IDS", "production_site_ids"),
    )
    allow_production_credentials: bool = Field(
        False,
        validation_alias=_env(
            "CIO_RELAY_ALLOW_PRODUCTION_CREDENTIALS", "allow_production_credentials"
        ),
    )
    data_dir: Path = Field(
        DEFAULT_DATA_DIR, validation_alias=_env("CIO_RELAY_DATA_DIR", "data_dir")
    )
    outbox: str | None = Field(None, validation_alias=_env("CIO_RELAY_OUTBOX", "outbox"))
    outbox_durability: Literal["process", "power"] = Field(
        "process", validation_alias=_env("CIO_RELAY_OUTBOX_DURABILITY", "outbox_durability")
    )
    outbox_max_depth: int = Field(
        5_000_000, validation_alias=_env("CIO_RELAY_OUTBOX_MAX_DEPTH", "outbox_max_depth")
    )
    lake: str | None = Field(None, validation_alias=_env("CIO_RELAY_LAKE", "lake"))
    #: ``project.dataset.table``: ``cio-relay run`` loads the lake's days into it
    #: (``lake/bigquery.py``). Unset: no BigQuery loader.
    bigquery_table: str | None = Field(
        None, validation_alias=_env("CIO_RELAY_BIGQUERY_TABLE", "bigquery_table")
    )
    #: Seconds between the loader's passes. Every pass loads each changed day once, and
    #: BigQuery allows 1,500 load jobs per table per day, failed ones included.
    bigquery_interval: float = Field(
        300.0, gt=0, validation_alias=_env("CIO_RELAY_BIGQUERY_INTERVAL", "bigquery_interval")
    )
    #: URL of a BigQuery emulator (tests, local runs): anonymous credentials, and a day is
    #: replaced through a staging table because emulators refuse ``table$YYYYMMDD``.
    bigquery_emulator: str | None = Field(
        None, validation_alias=_env("CIO_RELAY_BIGQUERY_EMULATOR", "bigquery_emulator")
    )
    users_db: str | None = Field(None, validation_alias=_env("CIO_RELAY_USERS_DB", "users_db"))
    #: A TOML file of ``[[sync]]`` tables (``sync/syncs_file.py``): the bulk syncs that
    #: ``cio-relay sync`` runs by name and ``cio-relay run`` schedules (those with ``every``).
    syncs: Path | None = Field(None, validation_alias=_env("CIO_RELAY_SYNCS", "syncs"))
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, validation_alias=_env("CIO_RELAY_API_KEYS", "api_keys")
    )
    host: str = Field("127.0.0.1", validation_alias=_env("CIO_RELAY_HOST", "host"))
    port: int = Field(8080, validation_alias=_env("CIO_RELAY_PORT", "port"))

    # --- HTTP service (server/) ---------------------------------------------------------------
    #: Largest request body the ingestion API reads (413 past it); room for 2 MB of attachments.
    api_max_body: int = Field(
        4_194_304, validation_alias=_env("CIO_RELAY_API_MAX_BODY", "api_max_body")
    )
    #: How long an ``Idempotency-Key`` is remembered (seconds).
    idempotency_retention: float = Field(
        24 * 3600.0,
        validation_alias=_env("CIO_RELAY_IDEMPOTENCY_RETENTION", "idempotency_retention"),
    )
    #: ``/metrics`` without a bearer key (for a scraper on a private network).
    metrics_public: bool = Field(
        False, validation_alias=_env("CIO_RELAY_METRICS_PUBLIC", "metrics_public")
    )
    #: The dashboard shows everything but refuses replay and purge.
    dashboard_read_only: bool = Field(
        False, validation_alias=_env("CIO_RELAY_DASHBOARD_READ_ONLY", "dashboard_read_only")
    )
    #: Mark the dashboard's session cookie ``Secure`` even when the request did not arrive over
    #: https as the server saw it (a TLS proxy on another host, not in ``trusted_proxies``).
    #: Unset: on in production, else only for https requests.
    secure_cookies: bool | None = Field(
        None, validation_alias=_env("CIO_RELAY_SECURE_COOKIES", "secure_cookies")
    )
    #: Peers whose ``X-Forwarded-For``/``X-Forwarded-Proto`` are believed (IP addresses or
    #: networks, or "*"): the reverse proxy in front of the service, so the dashboard sees the
    #: client's address (login throttling) and scheme (``Secure`` cookies). uvicorn's
    #: ``forwarded_allow_ips``, with its default: a proxy on the same host (127.0.0.1).
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.1"],
        validation_alias=_env("CIO_RELAY_TRUSTED_PROXIES", "trusted_proxies"),
    )
    log_level: str = Field("INFO", validation_alias=_env("CIO_RELAY_LOG_LEVEL", "log_level"))
    # Per-connection limits (cio_relay.http_guard). Our clients are servers (apps, Customer.io's
    # webhook sender) whose headers and bodies arrive at network speed; the deadlines leave room
    # for TCP's retransmission backoff over several lost packets (0.2 + 0.4 + ... + 3.2 s is
    # 6.2 s for five; 25 s for seven), and nothing more.
    #: Seconds for a request's headers, from the connection's opening or a later request's
    #: first byte (408 past it).
    http_header_timeout: float = Field(
        10.0,
        gt=0,
        allow_inf_nan=False,
        validation_alias=_env("CIO_RELAY_HTTP_HEADER_TIMEOUT", "http_header_timeout"),
    )
    #: Seconds a request body may go without a byte while it is being read (408 past it).
    http_body_timeout: float = Field(
        30.0,
        gt=0,
        allow_inf_nan=False,
        validation_alias=_env("CIO_RELAY_HTTP_BODY_TIMEOUT", "http_body_timeout"),
    )
    #: Bytes of request line and headers (431 past it): nginx's default bound (4 x 8 KiB);
    #: ours are a bearer key, a cookie, a few proxy headers.
    http_max_header_bytes: int = Field(
        32_768,
        gt=0,
        validation_alias=_env("CIO_RELAY_HTTP_MAX_HEADER_BYTES", "http_max_header_bytes"),
    )
    #: Connections open at once (a new one past it gets 503 at once). Far above what the
    #: clients use (connection pools of tens, Customer.io's webhook sender), below the common
    #: open-file limit of 1,024, so the refusal is a clear 503 and not a failed accept.
    http_max_connections: int = Field(
        1_000,
        gt=0,
        validation_alias=_env("CIO_RELAY_HTTP_MAX_CONNECTIONS", "http_max_connections"),
    )

    # --- delivery (contract 4, 6, 7) ----------------------------------------------------------
    #: Track's documented limit (track-api.json, "Rate Limits"), for live and backfill traffic.
    track_rate: float = Field(1000.0, validation_alias=_env("CIO_RELAY_TRACK_RATE", "track_rate"))
    app_rate: float = Field(10.0, validation_alias=_env("CIO_RELAY_APP_RATE", "app_rate"))
    transactional_rate: float = Field(
        100.0, validation_alias=_env("CIO_RELAY_TRANSACTIONAL_RATE", "transactional_rate")
    )
    broadcast_interval: float = Field(
        10.0, validation_alias=_env("CIO_RELAY_BROADCAST_INTERVAL", "broadcast_interval")
    )
    batch_max_bytes: int = Field(
        450_000, validation_alias=_env("CIO_RELAY_BATCH_MAX_BYTES", "batch_max_bytes")
    )
    #: How long a crashed worker's operations wait before another worker takes them over; a
    #: live worker renews its leases (a heartbeat every quarter of it) for as long as it works.
    lease_seconds: float = Field(
        10.0, gt=0, validation_alias=_env("CIO_RELAY_LEASE_SECONDS", "lease_seconds")
    )
    retry_base: float = Field(0.5, validation_alias=_env("CIO_RELAY_RETRY_BASE", "retry_base"))
    retry_cap: float = Field(300.0, validation_alias=_env("CIO_RELAY_RETRY_CAP", "retry_cap"))
    max_attempts: int = Field(15, validation_alias=_env("CIO_RELAY_MAX_ATTEMPTS", "max_attempts"))
    max_age: float = Field(3 * 24 * 3600.0, validation_alias=_env("CIO_RELAY_MAX_AGE", "max_age"))
    retry_ambiguous: bool = Field(
        False, validation_alias=_env("CIO_RELAY_RETRY_AMBIGUOUS", "retry_ambiguous")
    )

    # --- webhooks (contract 8) ----------------------------------------------------------------
    webhook_tolerance: int = Field(
        300, validation_alias=_env("CIO_RELAY_WEBHOOK_TOLERANCE", "webhook_tolerance")
    )
    webhook_max_body: int = Field(
        DEFAULT_WEBHOOK_MAX_BODY,
        validation_alias=_env("CIO_RELAY_WEBHOOK_MAX_BODY", "webhook_max_body"),
    )
    #: What the built-in handlers do on ``email_bounced`` / ``email_spammed`` (webhooks/builtin.py):
    #: ``record`` (the default: lake, metrics and a log line), ``unsubscribe`` (identify with
    #: ``unsubscribed: true``) or ``suppress`` (Track suppress: Customer.io documents it as
    #: permanently deleting the person, so it is never the default).
    bounce_policy: DeliveryHealthPolicy = Field(
        "record", validation_alias=_env("CIO_RELAY_BOUNCE_POLICY", "bounce_policy")
    )
    spam_policy: DeliveryHealthPolicy = Field(
        "record", validation_alias=_env("CIO_RELAY_SPAM_POLICY", "spam_policy")
    )
    webhook_record_unsubscribes: bool = Field(
        True,
        validation_alias=_env(
            "CIO_RELAY_WEBHOOK_RECORD_UNSUBSCRIBES", "webhook_record_unsubscribes"
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _refuse_retired_settings(cls, data: object) -> object:
        # A retired switch silently ignored would turn an operator's "suppress" into "record".
        for retired, replacement in RETIRED_SETTINGS.items():
            if retired in os.environ or (isinstance(data, dict) and retired.lower() in data):
                raise ConfigError(f"{retired} was retired: set {replacement} instead")
        return data

    @field_validator("bounce_policy", "spam_policy", mode="before")
    @classmethod
    def _known_policy(cls, value: object, info: ValidationInfo) -> object:
        setting = f"CIO_RELAY_{(info.field_name or '').upper()}"
        if not isinstance(value, str) or value.strip().lower() not in DELIVERY_HEALTH_POLICIES:
            raise ConfigError(
                f"{setting}: {value!r} is not a policy; use one of "
                f"{', '.join(DELIVERY_HEALTH_POLICIES)}"
            )
        return value.strip().lower()

    @field_validator(
        "webhook_signing_keys", "api_keys", "production_site_ids", "trusted_proxies", mode="before"
    )
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("api_keys")
    @classmethod
    def _refuse_weak_api_keys(cls, keys: list[SecretStr]) -> list[SecretStr]:
        for number, key in enumerate(keys, 1):
            value = key.get_secret_value()
            # Never the key, nor its length, in the message: it may end up in a log.
            if len(value) < MIN_API_KEY_LENGTH or len(set(value)) < MIN_API_KEY_DISTINCT:
                raise ConfigError(
                    f"CIO_RELAY_API_KEYS: key {number} of {len(keys)} is too weak: a key needs "
                    f"at least {MIN_API_KEY_LENGTH} characters, at least "
                    f"{MIN_API_KEY_DISTINCT} of them different; make one with "
                    "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
                )
        return keys

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_addresses(cls, entries: list[str]) -> list[str]:
        for entry in entries:
            if entry != "*":
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError:
                    raise ConfigError(
                        f"CIO_RELAY_TRUSTED_PROXIES: {entry!r} is not an IP address, a network or *"
                    ) from None
        return entries

    @model_validator(mode="after")
    def _refuse_production_credentials_outside_production(self) -> Settings:
        if (
            self.env != "production"
            and self.site_id
            and self.site_id in self.production_site_ids
            and not self.allow_production_credentials
        ):
            raise ConfigError(
                f"a {self.env} relay refuses the production site id (CUSTOMERIO_SITE_ID is "
                "listed in CIO_RELAY_PRODUCTION_SITE_IDS); set "
                "CIO_RELAY_ALLOW_PRODUCTION_CREDENTIALS=1 if this is intended"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _TomlSource(settings_cls)

    # --- derived ------------------------------------------------------------------------------
    @property
    def track_base_url(self) -> str:
        return (self.track_url or REGION_URLS[self.region]["track"]).rstrip("/")

    @property
    def app_base_url(self) -> str:
        return (self.app_url or REGION_URLS[self.region]["app"]).rstrip("/")

    @property
    def has_track_credentials(self) -> bool:
        return bool(self.site_id and self.track_api_key)

    def secret_values(self) -> list[str]:
        """Every secret configured, for the log scrubber (``observability.logs``)."""
        values: list[SecretStr | None] = [
            self.track_api_key,
            self.app_api_key,
            *self.webhook_signing_keys,
            *self.api_keys,
        ]
        return [value.get_secret_value() for value in values if value is not None]

    @property
    def outbox_url(self) -> str:
        return self.outbox or f"sqlite:///{self.data_dir / 'outbox.db'}"

    @property
    def webhook_inbox_path(self) -> Path:
        return self.data_dir / "webhooks.db"

    @property
    def lake_url(self) -> str:
        return self.lake or str(self.data_dir / "lake")
