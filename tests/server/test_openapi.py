"""schemathesis against the service's own OpenAPI document, over real HTTP.

Valid and invalid inputs (both generation modes) for every operation in the document, with the
bearer key: no answer may be a 5xx, and every answer must match the status codes and schemas
the document declares. Bounded to 25 examples per operation so the file runs in seconds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from cio_relay.config import Settings
from cio_relay.server import create_app
from cio_relay.server.openapi import openapi_document
from tests.server.conftest import serve

API_KEY = "schemathesis-key-0123456789abcdefghij"


@pytest.fixture(scope="module")
def service_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data: Path = tmp_path_factory.mktemp("schemathesis")
    settings = Settings(api_keys=API_KEY, data_dir=data, outbox=f"sqlite:///{data}/outbox.db")
    with serve(create_app(settings, run_workers=False)) as url:
        yield url


# The document the served app publishes (it serves no webhook route: none is configured).
schema = schemathesis.openapi.from_dict(openapi_document(webhooks=False))


@schema.parametrize()
@hypothesis.settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    derandomize=True,
)
def test_no_generated_input_gets_a_server_error(case: Any, service_url: str) -> None:
    case.call_and_validate(
        base_url=service_url,
        headers={"Authorization": f"Bearer {API_KEY}"},
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
        timeout=30,
    )


def test_every_path_parameter_of_an_ingestion_route_is_documented() -> None:
    paths = openapi_document()["paths"]
    for path, operations in paths.items():
        if not path.startswith("/v1/"):
            continue
        in_path = set(re.findall(r"\{([a-z_]+)\}", path))
        for method, operation in operations.items():
            documented = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
            assert documented == in_path, (method, path)


def test_removals_take_a_body_and_empty_bodies_are_allowed_only_where_all_is_optional() -> None:
    paths = openapi_document()["paths"]
    removal = paths["/v1/segments/{id}/people"]["delete"]["requestBody"]
    assert removal["required"] is True
    assert removal["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SegmentPeopleBody"
    }
    assert (
        paths["/v1/objects/{object_type_id}/{object_id}"]["post"]["requestBody"]["required"]
        is False
    )
    assert "requestBody" not in paths["/v1/objects/{object_type_id}/{object_id}"]["delete"]


def test_served_document_is_the_one_tested(service_url: str) -> None:
    import httpx

    served = httpx.get(f"{service_url}/openapi.json").json()
    assert served == openapi_document(webhooks=False)


def test_document_lists_every_ingestion_route_with_its_schemas() -> None:
    document = openapi_document()
    assert document["openapi"] == "3.1.0"
    paths = document["paths"]
    for path, method in [
        ("/v1/people/{id}", "post"),
        ("/v1/people/{id}", "delete"),
        ("/v1/people/{id}/events", "post"),
        ("/v1/events", "post"),
        ("/v1/people/{id}/suppress", "post"),
        ("/v1/people/{id}/unsuppress", "post"),
        ("/v1/transactional/email", "post"),
        ("/v1/broadcasts/{id}/triggers", "post"),
        ("/v1/transactional/whatsapp", "post"),
        ("/v1/transactional/in_app", "post"),
        ("/v1/transactional/inbox_message", "post"),
        ("/v1/people/{id}/relationships", "post"),
        ("/v1/people/{id}/relationships", "delete"),
        ("/v1/objects/{object_type_id}/{object_id}", "post"),
        ("/v1/objects/{object_type_id}/{object_id}", "delete"),
        ("/v1/objects/{object_type_id}/{object_id}/anonymous", "post"),
        ("/v1/objects/{object_type_id}/{object_id}/relationships", "post"),
        ("/v1/objects/{object_type_id}/{object_id}/relationships", "delete"),
        ("/v1/segments/{id}/people", "post"),
        ("/v1/segments/{id}/people", "delete"),
        ("/v1/metrics", "post"),
        ("/v1/push/events", "post"),
        ("/v1/batch", "post"),
    ]:
        operation = paths[path][method]
        assert set(operation["responses"]) == {"202", "401", "413", "422", "503"}
        assert operation["responses"]["202"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Accepted"
        }
    schemas = document["components"]["schemas"]
    assert {"EventBody", "EmailBody", "BatchBody", "ErrorBody", "Accepted"} <= set(schemas)
    assert {
        "WhatsAppBody",
        "TemplateSendBody",
        "PersonRelationshipsBody",
        "ObjectBody",
        "AnonymousObjectBody",
        "ObjectPeopleBody",
        "SegmentPeopleBody",
        "MetricBody",
        "PushEventBody",
    } <= set(schemas)
    for path in (
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/dashboard",
        "/webhooks/customerio",
    ):
        assert path in paths
