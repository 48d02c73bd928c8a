"""Customer.io's published OpenAPI documents, read from ``../shared/customerio-openapi/``.

The documents are the ground truth of the contract tests (design.md, "Package layout"): CI
keeps that folder beside the checkout. A contract test never skips: when the folder is missing
it fails, with a message that says where the documents are expected (under CI and outside it
alike, so that a green local run always means the requests were compared).
"""

from __future__ import annotations

import copy
import functools
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jsonschema_rs
import pytest

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = REPO.parent / "shared" / "customerio-openapi"

__all__ = ["DOCUMENTS", "document", "path_validator", "schema_validator"]


def _missing(name: str) -> str:
    where = "CI must place" if os.environ.get("CI") else "put"
    return (
        f"Customer.io's OpenAPI document {name} is missing: {where} Customer.io's published "
        f"documents in {DOCUMENTS} (see its README); the contract tests compare every request "
        "with them and do not skip"
    )


@functools.cache
def document(name: str = "track-api.json") -> dict[str, Any]:
    path = DOCUMENTS / name
    if not path.is_file():
        pytest.fail(_missing(name), pytrace=False)
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def _pointer(*parts: str) -> str:
    escaped = (part.replace("~", "~0").replace("/", "~1") for part in parts)
    return "#/" + "/".join(quote(part, safe="~") for part in escaped)


@functools.cache
def _with_quirks_undone(name: str) -> dict[str, Any]:
    """``document(name)`` with the known slips of the documents themselves undone, each named:

    - track-api.json ``eventsRequest`` (``POST /api/v1/customers/{identifier}/events``): its
      "Mobile screen view" requires ``anonymous_id``, copied from ``anonymousEventsRequest``;
      the event names its person in the path, and v2's ``person_screen`` has no such field.
    - a ``oneOf`` whose choices overlap, so that a body the text describes matches two of them
      and ``oneOf`` refuses it: ``POST /api/v1/merge_customers``'s ``primary``/``secondary``
      (no choice requires its identifier), ``anonymousEventsRequest`` (its standard event
      allows ``type: page``, as does its page view) and ``campaignRequest`` (its default
      audience matches every body), ``v2_cio_relationships``'s person identifiers (no choice
      requires its identifier, so ``{"cio_id": ...}`` matches all three) and
      ``POST /api/v1/metrics`` (its channels share metrics: ``opened`` is email's, push's,
      in-app's ...). Read as ``anyOf``, which is what the text says.
    """
    loaded = copy.deepcopy(document(name))
    if name != "track-api.json":
        return loaded
    schemas = loaded["components"]["schemas"]
    screen = schemas["eventsRequest"]["oneOf"][2]
    assert screen["title"] == "Mobile screen view", screen["title"]
    screen["required"] = [key for key in screen["required"] if key != "anonymous_id"]
    merge = loaded["paths"]["/api/v1/merge_customers"]["post"]["requestBody"]["content"]
    for side in ("primary", "secondary"):
        _any_of(merge["application/json"]["schema"]["properties"][side])
    _any_of(schemas["anonymousEventsRequest"])
    _any_of(schemas["campaignRequest"])
    _any_of(schemas["v2_cio_relationships"]["items"]["properties"]["identifiers"])
    metrics = loaded["paths"]["/api/v1/metrics"]["post"]["requestBody"]["content"]
    _any_of(metrics["application/json"]["schema"])
    return loaded


def _any_of(schema: dict[str, Any]) -> None:
    schema["anyOf"] = schema.pop("oneOf")


def _validator(name: str, pointer: str) -> jsonschema_rs.Draft202012Validator:
    # The whole document is the root, so that every ``$ref`` into its components resolves;
    # OpenAPI 3.1 schemas are JSON Schema 2020-12 (``discriminator`` and ``example`` are
    # annotations, ``format`` is not asserted).
    root = {**_with_quirks_undone(name), "$ref": pointer}
    return jsonschema_rs.Draft202012Validator(root)


@functools.cache
def path_validator(
    path: str, method: str, name: str = "track-api.json"
) -> jsonschema_rs.Draft202012Validator:
    """The validator of the JSON request body of ``method path`` as the document describes it."""
    operation = document(name)["paths"][path][method.lower()]
    assert "requestBody" in operation, f"{method} {path} documents no request body"
    return _validator(
        name,
        _pointer(
            "paths", path, method.lower(), "requestBody", "content", "application/json", "schema"
        ),
    )


@functools.cache
def schema_validator(
    schema: str, name: str = "track-api.json"
) -> jsonschema_rs.Draft202012Validator:
    """The validator of ``components.schemas[schema]``."""
    assert schema in document(name)["components"]["schemas"], schema
    return _validator(name, _pointer("components", "schemas", schema))


def documented_paths(name: str = "track-api.json") -> dict[str, dict[str, Any]]:
    paths: dict[str, dict[str, Any]] = document(name)["paths"]
    return paths
