"""The BigQuery loader's parts without a server: the production job, job ids, day fingerprints,
failure reasons and the load state. ``test_bigquery_emulator.py`` runs it end to end.

The production path (``PartitionLoad``) cannot run against the emulator, which refuses
``table$YYYYMMDD``: here the official client sends it through a scripted transport (a
``requests`` adapter that answers as BigQuery does), and the test reads what went on the wire.
"""

from __future__ import annotations

import io
import json
import re
import secrets
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
import requests
from google.api_core import exceptions as api_errors
from google.auth.credentials import AnonymousCredentials
from google.auth.exceptions import DefaultCredentialsError, RefreshError
from google.cloud import bigquery
from requests.adapters import BaseAdapter

from cio_relay.errors import ConfigError
from cio_relay.lake.bigquery import lake_days, open_loader, write_day_upload
from cio_relay.lake.bigquery_jobs import (
    CLUSTERING_FIELDS,
    FAILURE_REASONS,
    PartitionLoad,
    TableName,
    classify_failure,
    failure_text,
    load_job_id,
    partition_load_config,
)
from cio_relay.lake.bigquery_state import LoadState, read_summary, state_path_for
from cio_relay.lake.parquet import ParquetLake
from cio_relay.lake.schema import bigquery_schema
from tests.lake.helpers import row

ROOT = Path(__file__).resolve().parents[2]
TABLE = TableName("my-project.analytics.delivery_events")
MAY_1 = date(2024, 5, 1)
API_KEY = "test-" + secrets.token_hex(16)


# --- the production job ------------------------------------------------------------------------


def test_the_production_load_replaces_one_day_partition_from_parquet() -> None:
    config = partition_load_config()

    assert config.source_format == "PARQUET"
    assert config.write_disposition == "WRITE_TRUNCATE"
    assert config.create_disposition == "CREATE_IF_NEEDED"
    assert config.time_partitioning.type_ == "DAY"
    assert config.time_partitioning.field == "occurred_at"
    assert config.clustering_fields == list(CLUSTERING_FIELDS)
    assert [field.to_api_repr() for field in config.schema] == [
        {**field, "type": field["type"]} for field in bigquery_schema()
    ]
    assert TABLE.partition(MAY_1) == "my-project.analytics.delivery_events$20240501"


_UPLOAD_SESSION = "https://bigquery.googleapis.com/upload/session/1"


class ScriptedBigQuery(BaseAdapter):
    """A ``requests`` transport answering as BigQuery does: ``answers`` maps (method, path
    start) to (status, JSON body); every request is kept.

    A resumable upload (how the client sends a file of unknown size) is opened by a POST
    carrying the job resource and answered with the session URL to PUT the file to; the PUT's
    answer is the job, scripted as ``("PUT", "/upload/session")``.
    """

    def __init__(self, answers: dict[tuple[str, str], tuple[int, dict[str, Any]]]) -> None:
        super().__init__()
        self.answers = answers
        self.requests: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.requests.append(request)
        status, body = self._answer(request.method or "", request.path_url)
        response = requests.Response()
        if request.method == "POST" and "uploadType=resumable" in request.path_url:
            status, body = 200, {}
            response.headers["location"] = _UPLOAD_SESSION
        response.status_code = status
        response._content = json.dumps(body).encode()
        response.headers["content-type"] = "application/json"
        response.url = request.url or ""
        response.request = request
        return response

    def _answer(self, method: str, path: str) -> tuple[int, dict[str, Any]]:
        for (answers_method, start), answer in self.answers.items():
            if method == answers_method and path.startswith(start):
                return answer
        return 404, {"error": {"code": 404, "message": f"no answer for {method} {path}"}}

    def close(self) -> None:
        pass


def scripted_client(transport: ScriptedBigQuery) -> Any:
    session = requests.Session()
    session.mount("https://", transport)
    return bigquery.Client(
        project=TABLE.project,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        _http=session,
        client_options={"api_endpoint": "https://bigquery.googleapis.com"},
    )


def _done_job(job_id: str) -> dict[str, Any]:
    return {
        "jobReference": {"projectId": TABLE.project, "jobId": job_id, "location": "EU"},
        "configuration": {"load": {}},
        "status": {"state": "DONE"},
        "statistics": {"load": {"outputRows": "3"}},
    }


def _sent_job(request: requests.PreparedRequest) -> dict[str, Any]:
    """The job resource that opened a resumable upload."""
    assert request.body is not None
    return dict(json.loads(request.body))


def test_the_production_load_sends_the_job_to_the_partition_under_its_job_id() -> None:
    job_id = load_job_id(TABLE, MAY_1, "f" * 64, 1)
    transport = ScriptedBigQuery({("PUT", "/upload/session"): (200, _done_job(job_id))})

    rows = PartitionLoad().replace_day(
        scripted_client(transport), TABLE, MAY_1, io.BytesIO(b"PAR1"), job_id
    )

    opened, uploaded = transport.requests
    sent = _sent_job(opened)
    load = sent["configuration"]["load"]
    assert rows == 3
    assert uploaded.body == b"PAR1"
    assert sent["jobReference"]["jobId"] == job_id
    assert load["destinationTable"] == {
        "projectId": "my-project",
        "datasetId": "analytics",
        "tableId": "delivery_events$20240501",
    }
    assert load["writeDisposition"] == "WRITE_TRUNCATE"
    assert load["sourceFormat"] == "PARQUET"
    assert load["timePartitioning"] == {"type": "DAY", "field": "occurred_at"}
    assert load["clustering"] == {"fields": ["metric", "campaign_id", "delivery_id"]}


def test_a_load_sent_again_answers_409_and_the_job_already_there_is_its_result() -> None:
    job_id = load_job_id(TABLE, MAY_1, "f" * 64, 1)
    conflict = {"error": {"code": 409, "message": f"Already Exists: Job {job_id}"}}
    transport = ScriptedBigQuery(
        {
            ("PUT", "/upload/session"): (409, conflict),
            ("GET", "/bigquery/v2/projects/my-project/datasets/analytics"): (
                200,
                {"datasetReference": {"projectId": "my-project", "datasetId": "analytics"}}
                | {"location": "EU"},
            ),
            ("GET", f"/bigquery/v2/projects/my-project/jobs/{job_id}"): (200, _done_job(job_id)),
        }
    )

    rows = PartitionLoad().replace_day(
        scripted_client(transport), TABLE, MAY_1, io.BytesIO(b"PAR1"), job_id
    )

    assert rows == 3
    assert [r.method for r in transport.requests] == ["POST", "PUT", "GET", "GET"]
    assert "location=EU" in transport.requests[-1].path_url


def test_the_loads_clustering_is_the_tables_as_terraform_makes_it() -> None:
    terraform = (ROOT / "deploy" / "gcp" / "bigquery.tf").read_text()
    match = re.search(r"^\s*clustering\s*=\s*\[([^\]]*)\]", terraform, re.MULTILINE)

    assert match, "deploy/gcp/bigquery.tf names no clustering"
    assert tuple(re.findall(r'"(\w+)"', match.group(1))) == CLUSTERING_FIELDS


# --- names and ids -----------------------------------------------------------------------------


def test_a_job_id_is_the_same_for_the_same_table_day_content_and_attempt() -> None:
    first = load_job_id(TABLE, MAY_1, "a" * 64, 1)

    assert first == load_job_id(TABLE, MAY_1, "a" * 64, 1)
    assert len({first, load_job_id(TABLE, MAY_1, "b" * 64, 1)}) == 2
    assert len({first, load_job_id(TABLE, MAY_1, "a" * 64, 2)}) == 2
    assert len({first, load_job_id(TABLE, date(2024, 5, 2), "a" * 64, 1)}) == 2
    assert len({first, load_job_id(TableName("other.analytics.t"), MAY_1, "a" * 64, 1)}) == 2
    assert all(c.isalnum() or c in "_-" for c in first) and len(first) <= 1024


@pytest.mark.parametrize(
    "text", ["events", "project.events", "p.d.t.x", "p.d.t`; DROP", "P.d.t", "p.d-x.t"]
)
def test_a_table_that_is_not_project_dataset_table_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match=r"project\.dataset\.table"):
        TableName(text)


def test_a_domain_scoped_project_is_a_project() -> None:
    table = TableName("example.com:analytics-1.events.delivery")

    assert (table.project, table.dataset, table.table) == (
        "example.com:analytics-1",
        "events",
        "delivery",
    )


# --- the lake's days ---------------------------------------------------------------------------


@pytest.fixture
def lake(tmp_path: Path) -> Iterator[ParquetLake]:
    with ParquetLake(tmp_path / "lake") as opened:
        yield opened


def _flush(lake: ParquetLake, *rows: Any) -> None:
    lake.write(rows)
    lake.flush()


def test_a_days_fingerprint_changes_with_its_files_and_only_then(lake: ParquetLake) -> None:
    _flush(lake, row(when="2024-05-01 10:00:00"), row(when="2024-05-02 10:00:00"))
    before = {d.day: d.fingerprint for d in lake_days(lake.directory)}
    _flush(lake, row(when="2024-05-02 11:00:00"))
    after = {d.day: d.fingerprint for d in lake_days(lake.directory)}

    assert before[MAY_1] == after[MAY_1]
    assert before[date(2024, 5, 2)] != after[date(2024, 5, 2)]
    assert [d.day for d in lake_days(lake.directory, since=date(2024, 5, 2))] == [date(2024, 5, 2)]


def test_a_days_upload_holds_every_row_of_its_files(lake: ParquetLake, tmp_path: Path) -> None:
    _flush(lake, row(event_id="a1"), row(event_id="a2"))
    _flush(lake, row(event_id="a3"))
    (day,) = lake_days(lake.directory)

    with (tmp_path / "upload.parquet").open("w+b") as upload:
        written = write_day_upload(day.files, upload)
        upload.seek(0)
        table = pq.read_table(upload)

    assert len(day.files) == 2 and written == 3
    assert sorted(table.column("event_id").to_pylist()) == ["a1", "a2", "a3"]


# --- failures ----------------------------------------------------------------------------------


def _forbidden(reason: str) -> Exception:
    return api_errors.Forbidden("denied", errors=[{"reason": reason, "message": "m"}])


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (_forbidden("quotaExceeded"), "quota"),
        (_forbidden("rateLimitExceeded"), "quota"),
        (api_errors.TooManyRequests("slow down"), "quota"),
        (_forbidden("accessDenied"), "auth"),
        (api_errors.Unauthorized("no"), "auth"),
        (DefaultCredentialsError("no credentials"), "auth"),
        (RefreshError("token expired"), "auth"),
        (api_errors.NotFound("Not found: Dataset p:d"), "not_found"),
        (
            api_errors.BadRequest("Provided Schema does not match Table p:d.t. Field x changed"),
            "schema",
        ),
        (api_errors.BadRequest("Invalid job configuration"), "rejected"),
        (api_errors.ServiceUnavailable("backend"), "unavailable"),
        (requests.ConnectionError("refused"), "unavailable"),
        (TimeoutError(), "unavailable"),
        (api_errors.RetryError("deadline", cause=requests.ConnectionError("x")), "unavailable"),
        (ValueError("something else"), "other"),
    ],
)
def test_a_failure_is_named_from_a_fixed_vocabulary(exc: Exception, reason: str) -> None:
    assert classify_failure(exc) == reason
    assert reason in FAILURE_REASONS
    assert failure_text(exc).startswith(type(exc).__name__ + ": ")


# --- the load state ----------------------------------------------------------------------------


@pytest.fixture
def state(tmp_path: Path) -> Iterator[LoadState]:
    opened = LoadState(state_path_for(tmp_path / "lake"))
    yield opened
    opened.close()


def _record(state: LoadState, day: str, outcome: Callable[..., None], **extra: Any) -> None:
    state.begin(str(TABLE), day, fingerprint="f", job_id=f"job-{day}", attempt=1, now=10.0)
    outcome(str(TABLE), day, **extra)


def test_the_state_lives_beside_the_lake_and_survives_a_restart(tmp_path: Path) -> None:
    path = state_path_for(tmp_path / "data" / "lake")
    first = LoadState(path)
    _record(first, "2024-05-01", first.loaded, rows=5, now=20.0)
    first.close()
    again = LoadState(path)
    try:
        loaded = again.days(str(TABLE))["2024-05-01"]
    finally:
        again.close()

    assert path == tmp_path / "data" / "lake-bigquery.db"
    assert (loaded.status, loaded.rows, loaded.job_id, loaded.loaded_at) == (
        "loaded",
        5,
        "job-2024-05-01",
        20.0,
    )


def test_the_summary_counts_days_and_names_the_failures_newest_first(
    state: LoadState, tmp_path: Path
) -> None:
    _record(state, "2024-05-01", state.loaded, rows=5, now=20.0)
    for day, reason in (("2024-05-02", "quota"), ("2024-05-03", "schema")):
        state.failed(str(TABLE), day, fingerprint="f", reason=reason, error="x" * 900, now=30.0)
    _record(state, "2024-05-04", state.failed, fingerprint="f", reason="quota", error="e", now=1)

    summary = read_summary(state.path, str(TABLE))

    assert summary == state.summary(str(TABLE))
    assert (summary.loaded, summary.failed, summary.last_loaded_at) == (1, 3, 20.0)
    assert summary.failed_by_reason == (("quota", 2), ("schema", 1))
    assert [f.day for f in summary.failures] == ["2024-05-04", "2024-05-03", "2024-05-02"]
    assert max(len(f.error or "") for f in summary.failures) == 500
    assert read_summary(state.path, "another.table.name").loaded == 0


def test_reading_a_summary_where_there_is_no_state_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "lake-bigquery.db"

    summary = read_summary(path, str(TABLE))

    assert (summary.loaded, summary.failed, summary.failures) == (0, 0, ())
    assert not path.exists()


# --- the dashboard -----------------------------------------------------------------------------


def _overview(settings: Any) -> httpx.Response:
    """``/dashboard`` of an app made from ``settings``, served on 127.0.0.1."""
    import uvicorn

    from cio_relay.server import create_app
    from cio_relay.serving import BackgroundServer, bind_socket

    app = create_app(settings, run_workers=False)
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
    with BackgroundServer(config, bind_socket("127.0.0.1", 0)) as server:
        return httpx.get(f"{server.url}/dashboard", headers={"Authorization": f"Bearer {API_KEY}"})


def test_the_dashboard_shows_the_loads_and_names_each_failing_day(tmp_path: Path) -> None:
    from cio_relay.config import Settings

    settings = Settings(
        api_keys=API_KEY,
        data_dir=tmp_path,
        outbox=f"sqlite:///{tmp_path}/outbox.db",
        bigquery_table=str(TABLE),
    )
    state = LoadState(state_path_for(settings.lake_url))
    try:
        _record(state, "2024-05-01", state.loaded, rows=5, now=20.0)
        state.failed(
            str(TABLE), "2024-05-02", fingerprint="f", reason="quota", error="Quota <b>", now=30.0
        )
    finally:
        state.close()

    page = _overview(settings)

    assert page.status_code == 200
    assert "1 days loaded" in page.text and "1 failing" in page.text
    assert "(quota: 1)" in page.text
    assert "2024-05-02" in page.text and "Quota &lt;b&gt;" in page.text  # escaped, not markup


def test_the_dashboard_says_nothing_of_bigquery_without_a_table(tmp_path: Path) -> None:
    from cio_relay.config import Settings

    settings = Settings(
        api_keys=API_KEY, data_dir=tmp_path, outbox=f"sqlite:///{tmp_path}/outbox.db"
    )
    page = _overview(settings)

    assert page.status_code == 200 and "bigquery-status" not in page.text
    assert not state_path_for(settings.lake_url).exists()


# --- production credentials --------------------------------------------------------------------


def test_missing_credentials_are_an_auth_failure_recorded_for_the_dashboard(
    lake: ParquetLake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(lake.directory / "missing.json"))
    _flush(lake, row(when="2024-05-01 10:00:00"), row(when="2024-05-02 10:00:00"))
    loader = open_loader(lake.directory, str(TABLE))
    try:
        results = loader.run_pass()
        summary = loader.state.summary(str(TABLE))
    finally:
        loader.close()

    assert [(r.day, r.outcome, r.reason) for r in results] == [(MAY_1, "failed", "auth")]
    assert summary.failed_by_reason == (("auth", 1),)
    assert "DefaultCredentialsError" in (summary.failures[0].error or "")


def test_a_lake_that_is_not_a_directory_cannot_be_loaded() -> None:
    with pytest.raises(ConfigError, match="directory"):
        open_loader("memory://", str(TABLE))
