"""The Terraform of ``deploy/gcp``, read with python-hcl2 and held to what the relay needs.

The Google provider cannot be downloaded here, so ``terraform validate`` and ``plan`` cannot
run; ``scripts/check-terraform.sh`` formats, loads and checkov-scans the configuration, and these
tests check what those cannot: references resolve, each runtime has its own service account,
secrets reach the containers only by reference, the environment variables and commands are
the relay's own, the events table matches ``cio_relay.lake.schema``, and every environment sets
the same variables.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest
import typer

from cio_relay.cli import app as cli_app
from cio_relay.config import Settings
from cio_relay.lake.bigquery_schema import PARTITION_COLUMN, main, schema_json
from cio_relay.lake.schema import COLUMN_NAMES, bigquery_schema
from cio_relay.server.app import PUBLIC_PATHS

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "gcp"
ENVIRONMENTS = ("development", "staging", "production")
RUNTIMES = (
    "google_cloud_run_v2_service",
    "google_cloud_run_v2_worker_pool",
    "google_cloud_run_v2_job",
)
_OPTIONS = hcl2.SerializationOptions(
    with_comments=False, explicit_blocks=False, strip_string_quotes=True
)


def _parse(path: Path) -> dict[str, Any]:
    with path.open() as file:
        return hcl2.load(file, serialization_options=_OPTIONS)


@cache
def configuration() -> dict[str, list[Any]]:
    """Every top-level block of every ``.tf`` file, by block type."""
    merged: dict[str, list[Any]] = {}
    for path in sorted(CONFIG.glob("*.tf")):
        for block_type, blocks in _parse(path).items():
            merged.setdefault(block_type, []).extend(blocks)
    return merged


def resources(resource_type: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for block in configuration().get("resource", []):
        found.update(block.get(resource_type, {}))
    return found


def all_resources() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for block in configuration().get("resource", []):
        for resource_type, by_name in block.items():
            for name, body in by_name.items():
                yield resource_type, name, body


def locals_() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for block in configuration().get("locals", []):
        merged.update(block)
    return merged


def variables() -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for block in configuration().get("variable", []):
        merged.update(block)
    return merged


def tfvars(environment: str) -> dict[str, Any]:
    return _parse(CONFIG / "environments" / f"{environment}.tfvars")


def runtimes() -> dict[str, dict[str, Any]]:
    """Every Cloud Run service, worker pool and job, as ``type.name``."""
    return {f"{kind}.{name}": body for kind in RUNTIMES for name, body in resources(kind).items()}


def container(runtime: dict[str, Any]) -> dict[str, Any]:
    (template,) = runtime["template"]
    (only,) = template["containers"]
    return dict(only)


def plain_env(runtime: dict[str, Any]) -> dict[str, str]:
    """The container's literal environment: the object its ``dynamic "env"`` without a
    ``value_source`` iterates over (a local, resolved here through ``merge`` of locals)."""
    for dynamic in container(runtime).get("dynamic", []):
        env = dynamic["env"]
        if "value_source" not in env["content"][0]:
            return _resolve_env_object(env["for_each"])
    return {}


def _resolve_env_object(expression: str) -> dict[str, str]:
    name = _single_local(expression)
    value = locals_()[name]
    if isinstance(value, dict):
        return value
    merged: dict[str, str] = {}
    for part in re.findall(r"local\.(\w+)", value):
        merged.update(_resolve_env_object(f"${{local.{part}}}"))
    return merged


def _single_local(expression: str) -> str:
    match = re.fullmatch(r"\$\{local\.(\w+)\}", expression)
    assert match, f"expected a reference to one local, got {expression}"
    return match.group(1)


def secret_env(runtime: dict[str, Any]) -> dict[str, str]:
    """Environment variable -> secret key, for the container's ``secret_key_ref`` env."""
    for dynamic in container(runtime).get("dynamic", []):
        env = dynamic["env"]
        if "value_source" in env["content"][0]:
            (source,) = env["content"][0]["value_source"]
            (ref,) = source["secret_key_ref"]
            assert ref["secret"] == "${google_secret_manager_secret.relay[env.key].secret_id}"
            secrets_list = re.search(r"for secret in local\.(\w+)", env["for_each"])
            assert secrets_list, env["for_each"]
            chosen = _secret_names(secrets_list.group(1))
            return {
                locals_()["secret_env"][secret]: secret
                for secret in chosen
                if secret in locals_()["secret_env"]
            }
    return {}


def _secret_names(local_name: str) -> list[str]:
    value = locals_()[local_name]
    if isinstance(value, list):
        return [locals_()[_single_local(v)] if v.startswith("${") else v for v in value]
    # concat(keys(local.secret_env), [local.redis_ca_secret])
    assert value == "${concat(keys(local.secret_env), [local.redis_ca_secret])}", value
    return [*locals_()["secret_env"], locals_()["redis_ca_secret"]]


def setting_names() -> set[str]:
    """Every environment variable ``Settings`` reads."""
    names: set[str] = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        choices = getattr(alias, "choices", [alias])
        names.update(str(choice) for choice in choices if str(choice).isupper())
    return names


#: The settings that hold secrets (config.Settings: SecretStr, or a URL carrying a password).
SECRET_SETTINGS = {
    "CUSTOMERIO_SITE_ID",
    "CUSTOMERIO_TRACK_API_KEY",
    "CUSTOMERIO_APP_API_KEY",
    "CUSTOMERIO_WEBHOOK_SIGNING_KEY",
    "CIO_RELAY_API_KEYS",
    "CIO_RELAY_OUTBOX",
}


# --- the BigQuery table ------------------------------------------------------------------------


def test_committed_bigquery_schema_is_the_one_generated_from_the_lake_schema() -> None:
    committed = (CONFIG / "bigquery_schema.json").read_text(encoding="utf-8")
    assert committed == schema_json(), (
        "deploy/gcp/bigquery_schema.json is stale: "
        "python -m cio_relay.lake.bigquery_schema deploy/gcp/bigquery_schema.json"
    )
    assert json.loads(committed) == bigquery_schema()
    assert tuple(field["name"] for field in json.loads(committed)) == COLUMN_NAMES


def test_schema_generator_writes_the_file_or_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "schema.json"
    assert main([str(target)]) == 0
    assert target.read_text(encoding="utf-8") == schema_json()
    assert main([]) == 0
    assert capsys.readouterr().out == schema_json()
    assert main(["one", "two"]) == 2


def test_events_table_reads_the_generated_schema_and_is_day_partitioned_on_occurred_at() -> None:
    (table,) = resources("google_bigquery_table").values()
    assert "bigquery_schema.json" in table["schema"]
    assert table["time_partitioning"] == [{"type": "DAY", "field": "occurred_at"}]
    assert PARTITION_COLUMN == "occurred_at"
    by_name = {field["name"]: field for field in bigquery_schema()}
    assert by_name["occurred_at"]["type"] == "TIMESTAMP"
    assert by_name["occurred_at"]["mode"] == "REQUIRED"
    assert set(table["clustering"]) <= set(COLUMN_NAMES)


# --- identities and secrets --------------------------------------------------------------------


def test_every_runtime_runs_as_its_own_service_account() -> None:
    accounts = set(resources("google_service_account"))
    assert {"api", "worker", "loader"} <= accounts
    used = []
    for name, runtime in runtimes().items():
        (template,) = runtime["template"]
        match = re.fullmatch(
            r"\$\{google_service_account\.(\w+)\.email\}", template["service_account"]
        )
        assert match, (
            f"{name} runs as {template['service_account']}, not a service account of its own"
        )
        used.append(match.group(1))
    assert len(used) == len(set(used)), f"runtimes share a service account: {used}"
    assert {"api", "worker"} <= set(used)


def test_no_service_account_has_a_project_wide_role_beyond_running_bigquery_jobs() -> None:
    grants = resources("google_project_iam_member")
    assert {(g["role"], g["member"]) for g in grants.values()} == {
        ("roles/bigquery.jobUser", "${google_service_account.loader.member}")
    }
    for kind in ("google_project_iam_binding", "google_project_iam_policy"):
        assert not resources(kind), f"{kind} is authoritative over the whole project"


def test_secret_values_are_never_in_terraform() -> None:
    assert not resources("google_secret_manager_secret_version")
    text = "\n".join(path.read_text() for path in CONFIG.rglob("*.tf*"))
    assert "secret_data" not in text
    for name in variables():
        assert not re.search(r"key|secret|password|token|auth", name), (
            f"variable {name!r} looks like a secret: secrets go to Secret Manager by hand"
        )


def test_secrets_reach_the_containers_only_by_reference() -> None:
    for name, runtime in runtimes().items():
        plain, by_reference = plain_env(runtime), secret_env(runtime)
        assert not SECRET_SETTINGS & set(plain), f"{name} sets a secret as a plain value"
        assert set(by_reference) <= SECRET_SETTINGS, name
    api = resources("google_cloud_run_v2_service")["api"]
    assert set(secret_env(api)) == SECRET_SETTINGS


def test_workers_read_only_the_secrets_delivery_needs() -> None:
    worker = resources("google_cloud_run_v2_worker_pool")["worker"]
    assert set(secret_env(worker)) == {
        "CUSTOMERIO_SITE_ID",
        "CUSTOMERIO_TRACK_API_KEY",
        "CUSTOMERIO_APP_API_KEY",
        "CIO_RELAY_OUTBOX",
    }


def test_secret_access_is_granted_per_secret_to_the_runtimes_that_read_it() -> None:
    (readers,) = resources("google_secret_manager_secret_iam_member").values()
    assert readers["role"] == "roles/secretmanager.secretAccessor"
    assert readers["for_each"] == "${local.secret_readers}"
    for kind in (
        "google_secret_manager_secret_iam_binding",
        "google_secret_manager_secret_iam_policy",
    ):
        assert not resources(kind)
    table = locals_()["secret_readers"]
    assert "local.api_secrets" in table and "google_service_account.api.member" in table
    assert "local.worker_secrets" in table and "google_service_account.worker.member" in table
    assert "loader" not in table


# --- the relay's own settings, commands and probes ---------------------------------------------


def test_every_environment_variable_set_is_a_setting_of_the_relay() -> None:
    known = setting_names()
    for name, runtime in runtimes().items():
        env = set(plain_env(runtime)) | set(secret_env(runtime))
        assert env, name
        assert env <= known, f"{name} sets variables the relay does not read: {env - known}"


def test_containers_run_the_relays_commands() -> None:
    commands = typer.main.get_command(cli_app).commands  # type: ignore[attr-defined]
    expected = {
        "google_cloud_run_v2_service.api": ["run"],
        "google_cloud_run_v2_worker_pool.worker": ["worker"],
    }
    for name, args in expected.items():
        spec = container(runtimes()[name])
        assert spec["command"] == ["cio-relay"]
        assert spec["args"] == args
        assert args[0] in commands


def test_api_probes_use_the_public_health_routes_on_the_port_the_relay_binds() -> None:
    api = resources("google_cloud_run_v2_service")["api"]
    spec = container(api)
    port = locals_()["api_port"]
    assert spec["ports"] == [{"container_port": "${local.api_port}"}]
    assert locals_()["api_only_env"]["CIO_RELAY_PORT"] == "${tostring(local.api_port)}"
    assert locals_()["api_only_env"]["CIO_RELAY_HOST"] == "0.0.0.0"
    (startup,) = spec["startup_probe"]
    (liveness,) = spec["liveness_probe"]
    assert startup["http_get"] == [{"path": "/readyz", "port": "${local.api_port}"}]
    assert liveness["http_get"] == [{"path": "/healthz", "port": "${local.api_port}"}]
    assert {"/readyz", "/healthz"} <= PUBLIC_PATHS  # Cloud Run's probes send no API key
    assert port == 8080
    # Cloud Run allows at most 240 s for a startup probe.
    assert startup["period_seconds"] * startup["failure_threshold"] <= 240
    assert startup["timeout_seconds"] < startup["period_seconds"]


def test_request_timeout_and_concurrency_follow_the_relays_limits() -> None:
    # The defaults as declared, not as this machine's environment might override them.
    fields = Settings.model_fields
    values = locals_()
    for name in ("http_header_timeout", "http_body_timeout", "http_max_connections"):
        assert values[name] == fields[name].default, name
    max_connections = fields["http_max_connections"].default
    api_env = values["api_only_env"]
    assert api_env["CIO_RELAY_HTTP_HEADER_TIMEOUT"] == "${tostring(local.http_header_timeout)}"
    assert api_env["CIO_RELAY_HTTP_BODY_TIMEOUT"] == "${tostring(local.http_body_timeout)}"
    assert api_env["CIO_RELAY_HTTP_MAX_CONNECTIONS"] == "${tostring(local.http_max_connections)}"
    (template,) = resources("google_cloud_run_v2_service")["api"]["template"]
    assert template["timeout"] == "${local.api_request_timeout}s"
    assert template["max_instance_request_concurrency"] == "${var.api_concurrency}"
    (validation,) = variables()["api_concurrency"]["validation"]
    assert f"var.api_concurrency <= {max_connections}" in validation["condition"]
    for environment in ENVIRONMENTS:
        assert tfvars(environment)["api_concurrency"] <= max_connections


def test_api_keeps_cpu_between_requests_for_its_in_process_workers() -> None:
    (resources_block,) = container(resources("google_cloud_run_v2_service")["api"])["resources"]
    assert resources_block["cpu_idle"] is False


def test_workers_are_a_worker_pool_with_a_fixed_instance_count() -> None:
    worker = resources("google_cloud_run_v2_worker_pool")["worker"]
    assert worker["scaling"] == [
        {"scaling_mode": "MANUAL", "manual_instance_count": "${var.worker_instances}"}
    ]
    assert "ports" not in container(worker)  # cio-relay worker serves no HTTP


# --- the outbox -------------------------------------------------------------------------------


def test_redis_outbox_has_auth_tls_and_never_evicts() -> None:
    (redis,) = resources("google_redis_instance").values()
    assert redis["auth_enabled"] is True
    assert redis["transit_encryption_mode"] == "SERVER_AUTHENTICATION"
    assert redis["redis_configs"]["maxmemory-policy"] == "noeviction"
    assert redis["tier"] == "${var.redis_tier}"


def test_outbox_url_template_uses_tls_and_the_mounted_ca() -> None:
    outputs: dict[str, Any] = {}
    for block in configuration()["output"]:
        outputs.update(block)
    template = outputs["outbox_url_template"]["value"]
    assert template.startswith("rediss://:AUTH_STRING@")
    assert "ssl_ca_certs=${local.redis_ca_dir}/${local.redis_ca_filename}" in template
    for runtime in runtimes().values():
        (template_block,) = runtime["template"]
        mounts = container(runtime)["volume_mounts"]
        assert {"name": "redis-ca", "mount_path": "${local.redis_ca_dir}"} in mounts
        assert template_block["volumes"][0]["name"] == "redis-ca"


# --- environments -----------------------------------------------------------------------------


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_environment_sets_every_variable_and_names_itself(environment: str) -> None:
    values = {k: v for k, v in tfvars(environment).items() if not k.startswith("__")}
    assert set(values) == set(variables())
    assert values["environment"] == environment
    backend = _parse(CONFIG / "environments" / f"{environment}.gcs.tfbackend")
    assert set(backend) == {"bucket", "prefix"}
    assert backend["prefix"].endswith(environment)


def test_every_environment_sets_the_same_variables_with_its_own_project_and_state() -> None:
    keys = {env: {k for k in tfvars(env) if not k.startswith("__")} for env in ENVIRONMENTS}
    assert keys["development"] == keys["staging"] == keys["production"]
    assert len({tfvars(env)["project_id"] for env in ENVIRONMENTS}) == len(ENVIRONMENTS)
    assert len({tfvars(env)["subnet_cidr"] for env in ENVIRONMENTS}) == len(ENVIRONMENTS)


def test_no_variable_has_a_default_so_no_environment_inherits_one() -> None:
    assert all("default" not in body for body in variables().values())


def test_only_production_is_protected_from_deletion_and_kept_running() -> None:
    assert tfvars("production")["deletion_protection"] is True
    assert tfvars("production")["api_min_instances"] >= 1
    assert tfvars("production")["redis_tier"] == "STANDARD_HA"
    for environment in ("development", "staging"):
        assert tfvars(environment)["deletion_protection"] is False
    protected = [
        body["deletion_protection"]
        for kind, _, body in all_resources()
        if "deletion_protection" in body
    ]
    assert protected and set(protected) == {"${var.deletion_protection}"}


# --- what `terraform validate` would have caught ----------------------------------------------


def _expressions(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _expressions(item)
    elif isinstance(value, list):
        for item in value:
            yield from _expressions(item)


def test_every_reference_names_something_declared() -> None:
    text = list(_expressions(configuration()))
    declared_resources = {f"{kind}.{name}" for kind, name, _ in all_resources()}
    outputs = {name for block in configuration()["output"] for name in block}
    assert outputs
    for expression in text:
        for name in re.findall(r"\bvar\.(\w+)", expression):
            assert name in variables(), f"undeclared variable var.{name}"
        for name in re.findall(r"\blocal\.(\w+)", expression):
            assert name in locals_(), f"undefined local.{name}"
        for kind, name in re.findall(r"\b(google_\w+)\.(\w+)", expression):
            if kind.startswith("google_") and f"{kind}.{name}" not in declared_resources:
                # Attribute paths like google_service_account.api.email start with the type.
                pytest.fail(f"reference to undeclared resource {kind}.{name}")
