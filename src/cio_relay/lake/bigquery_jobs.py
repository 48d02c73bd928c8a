"""How one day of the lake becomes BigQuery's copy of that day, and how a failure is named.

Two strategies replace a day, both idempotent:

- ``PartitionLoad`` (production): one load job, ``WRITE_TRUNCATE`` into the partition
  ``table$YYYYMMDD``, source format Parquet, the table partitioned by DAY on ``occurred_at`` and
  clustered as Terraform makes it (created so on first load if Terraform has not). The job id
  is deterministic (``load_job_id``), so a load sent again after a crash answers 409 and the
  loader waits for the job already there instead of loading twice.
- ``StagingReplace`` (emulators, which refuse partition decorators and accept a job id twice):
  load into a staging table with ``WRITE_TRUNCATE``, then ``DELETE`` the day and ``INSERT`` the
  staging rows. Repeating any step, or all of them, leaves the day as it should be.

``classify_failure`` names what went wrong with a fixed vocabulary (``FAILURE_REASONS``), for the
dashboard and a metrics label: a message never becomes a label.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from datetime import date
from typing import IO, Any

from cio_relay.errors import ConfigError
from cio_relay.lake.schema import COLUMN_NAMES, bigquery_schema

__all__ = [
    "CLUSTERING_FIELDS",
    "FAILURE_REASONS",
    "STOPS_A_PASS",
    "PartitionLoad",
    "StagingReplace",
    "TableName",
    "classify_failure",
    "connect_client",
    "failure_text",
    "load_job_id",
    "partition_load_config",
]

#: The table's clustering, as Terraform makes it (deploy/gcp/bigquery.tf): a load into an
#: existing table names the same, and a table the first load creates gets it too.
CLUSTERING_FIELDS = ("metric", "campaign_id", "delivery_id")
#: Every value ``classify_failure`` returns.
FAILURE_REASONS = ("quota", "auth", "schema", "not_found", "unavailable", "rejected", "other")
#: Failures that would fail every other day of a pass too: the pass stops at them.
STOPS_A_PASS = frozenset({"quota", "auth", "not_found", "unavailable"})

_TABLE = re.compile(
    r"^(?P<project>(?:[a-z0-9.-]+:)?[a-z](?:[a-z0-9-]*[a-z0-9])?)\.(?P<dataset>\w+)\.(?P<table>\w+)$"
)
_JOB_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_QUOTA_REASONS = frozenset({"quotaExceeded", "rateLimitExceeded"})
_SCHEMA_WORDS = re.compile(r"schema|field|column|type|mode", re.IGNORECASE)
_JOB_TIMEOUT = 900.0  # seconds a load or query job may take before the pass gives up on it


class TableName:
    """``project.dataset.table``, checked (a domain-scoped project ``example.com:p`` too)."""

    def __init__(self, text: str) -> None:
        match = _TABLE.match(text)
        if match is None:
            raise ConfigError(
                f"BigQuery table: {text[:200]!r} is not project.dataset.table "
                "(letters, digits and underscores in the dataset and table names)"
            )
        self.project, self.dataset, self.table = match.group("project", "dataset", "table")

    def __str__(self) -> str:
        return f"{self.project}.{self.dataset}.{self.table}"

    def partition(self, day: date) -> str:
        return f"{self}${day:%Y%m%d}"


def load_job_id(table: TableName, day: date, fingerprint: str, attempt: int) -> str:
    """The same table, day, content and attempt always give the same job id."""
    digest = hashlib.sha256(f"{table}\n{day}\n{fingerprint}".encode()).hexdigest()[:24]
    name = _JOB_ID_UNSAFE.sub("_", f"{table.dataset}_{table.table}")
    return f"cio_relay_load_{name}_{day:%Y%m%d}_{digest}_{attempt}"


def _schema() -> list[Any]:
    from google.cloud import bigquery

    return [bigquery.SchemaField.from_api_repr(field) for field in bigquery_schema()]


def _day_partitioning() -> Any:
    from google.cloud import bigquery

    return bigquery.TimePartitioning(type_=bigquery.TimePartitioningType.DAY, field="occurred_at")


def partition_load_config() -> Any:
    """The production load job: Parquet, replacing one DAY partition on ``occurred_at``."""
    from google.cloud import bigquery

    return bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.PARQUET,
        write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
        create_disposition=bigquery.CreateDisposition.CREATE_IF_NEEDED,
        time_partitioning=_day_partitioning(),
        clustering_fields=list(CLUSTERING_FIELDS),
        schema=_schema(),
    )


class _Strategy:
    """What both strategies share: how hard the client tries before a load counts as failed.

    ``upload_retries``: the client's retries of an upload; ``api_retry``: a
    ``google.api_core.retry.Retry`` for the other calls (None: the client's default, which
    keeps trying for minutes); ``job_timeout``: seconds to wait for a job to finish.
    """

    def __init__(
        self,
        *,
        upload_retries: int = 6,
        api_retry: Any = None,
        job_timeout: float = _JOB_TIMEOUT,
    ) -> None:
        self.upload_retries = upload_retries
        self.job_timeout = job_timeout
        self.retry: dict[str, Any] = {} if api_retry is None else {"retry": api_retry}

    def _wait(self, job: Any) -> None:
        job.result(timeout=self.job_timeout, **self.retry)


class PartitionLoad(_Strategy):
    """The production strategy (module docstring)."""

    name = "partition"

    def replace_day(
        self, client: Any, table: TableName, day: date, source: IO[bytes], job_id: str
    ) -> int:
        """Send the day's Parquet ``source``; the rows BigQuery loaded."""
        from google.api_core.exceptions import Conflict

        try:
            job = client.load_table_from_file(
                source,
                table.partition(day),
                rewind=True,
                num_retries=self.upload_retries,
                job_id=job_id,
                job_config=partition_load_config(),
            )
        except Conflict:  # sent before (a crash, another process): that job is this load
            job = self._existing_job(client, table, job_id)
        self._wait(job)
        return int(job.output_rows or 0)

    def _existing_job(self, client: Any, table: TableName, job_id: str) -> Any:
        # A job outside the US and EU multi-regions is found only with its location.
        dataset = client.get_dataset(f"{table.project}.{table.dataset}", **self.retry)
        return client.get_job(job_id, location=dataset.location, **self.retry)

    def settle(self, client: Any, table: TableName, job_id: str) -> None:
        """Wait for an earlier job of the day that may still run, so it cannot land last."""
        from google.api_core.exceptions import GoogleAPIError

        # Not found (never sent) or failed: either way it will not write the day.
        with contextlib.suppress(GoogleAPIError):
            self._wait(self._existing_job(client, table, job_id))


class StagingReplace(_Strategy):
    """The emulator strategy (module docstring)."""

    name = "staging"

    def replace_day(
        self, client: Any, table: TableName, day: date, source: IO[bytes], job_id: str
    ) -> int:
        from google.cloud import bigquery

        staging = f"{table}__cio_relay_staging_{day:%Y%m%d}"
        target = bigquery.Table(str(table), schema=_schema())
        target.time_partitioning = _day_partitioning()
        client.create_table(target, exists_ok=True, **self.retry)
        client.create_table(bigquery.Table(staging, schema=_schema()), exists_ok=True, **self.retry)
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
            schema=_schema(),
        )
        job = client.load_table_from_file(
            source,
            staging,
            rewind=True,
            num_retries=self.upload_retries,
            job_id=job_id,
            job_config=config,
        )
        self._wait(job)
        columns = ", ".join(COLUMN_NAMES)
        day_only = bigquery.QueryJobConfig(
            query_parameters=[bigquery.ScalarQueryParameter("day", "DATE", day)]
        )
        self._run(
            client,
            # ``table`` is a checked TableName: no quote or backtick can be in it.
            f"DELETE FROM `{table}` WHERE DATE(occurred_at) = @day",  # noqa: S608
            f"{job_id}_delete",
            day_only,
        )
        self._run(
            client,
            f"INSERT INTO `{table}` ({columns}) SELECT {columns} FROM `{staging}`",  # noqa: S608
            f"{job_id}_insert",
        )
        client.delete_table(staging, not_found_ok=True, **self.retry)
        return int(job.output_rows or 0)

    def _run(self, client: Any, sql: str, job_id: str, config: Any = None) -> None:
        # A job id is given, so the client must not retry the job under the same id itself.
        self._wait(
            client.query(sql, job_config=config, job_id=job_id, job_retry=None, **self.retry)
        )

    def settle(self, client: Any, table: TableName, job_id: str) -> None:
        """Nothing to wait for: every step is repeated, and each replaces what it writes."""


def connect_client(table: TableName, *, emulator: str | None = None) -> Any:
    """A ``google.cloud.bigquery.Client`` for ``table``'s project: Application Default
    Credentials, or anonymous ones against the emulator at ``emulator``."""
    try:
        from google.cloud import bigquery
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError("BigQuery: pip install 'cio-relay[bigquery]'") from exc
    if emulator is None:
        return bigquery.Client(project=table.project)
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials

    return bigquery.Client(
        project=table.project,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=emulator),
    )


def _api_reasons(exc: BaseException) -> set[str]:
    errors = getattr(exc, "errors", None) or []
    return {str(error.get("reason", "")) for error in errors if isinstance(error, dict)}


def _has_class(exc: BaseException, module: str, names: frozenset[str]) -> bool:
    """``exc`` is (a subclass of) one of ``names`` from ``module``, without importing it."""
    return any(
        (cls.__module__ == module or cls.__module__.startswith(module + "."))
        and cls.__name__ in names
        for cls in type(exc).__mro__
    )


def _unreachable(exc: BaseException) -> bool:
    return (
        isinstance(exc, (ConnectionError, TimeoutError))
        or _has_class(exc, "requests", frozenset({"ConnectionError", "Timeout"}))
        or _has_class(exc, "google.auth", frozenset({"TransportError"}))
    )


def classify_failure(exc: BaseException) -> str:
    """One of ``FAILURE_REASONS`` for an exception of a load (google-api-core's, google-auth's,
    a connection error)."""
    cause = getattr(exc, "cause", None)
    if _has_class(exc, "google.api_core", frozenset({"RetryError"})) and cause is not None:
        return classify_failure(cause)  # the client retried until its deadline: why it did
    code = getattr(exc, "code", None)
    if _api_reasons(exc) & _QUOTA_REASONS or code == 429:
        return "quota"
    if _unreachable(exc) or (isinstance(code, int) and code >= 500):
        return "unavailable"
    if code in (401, 403) or _has_class(exc, "google.auth", frozenset({"GoogleAuthError"})):
        return "auth"
    if code == 404:
        return "not_found"
    if code == 400:
        message = str(getattr(exc, "message", "") or exc)
        return "schema" if _SCHEMA_WORDS.search(message) else "rejected"
    return "other"


def failure_text(exc: BaseException) -> str:
    """A one-line message for the state file and the dashboard."""
    text = str(getattr(exc, "message", "") or exc) or type(exc).__name__
    return f"{type(exc).__name__}: {' '.join(text.split())}"
