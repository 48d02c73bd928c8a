"""Contract test 7(b) of issue 13: the emulator, driven by schemathesis from Customer.io's
published ``track-api.json``, never answers a 5xx, and answers 2xx to what the document calls
valid.

Every documented Track operation is tried with generated requests that fit its schema
(positive) and that do not (negative), a bounded number of each, against the in-process
emulator (ASGI, ``create_app``) with the credentials the operation documents. The
document is read by ``tests/contract/openapi.py``, which fails (never skips) when the folder
is missing.

What the document's schemas do not say, and how this test reads them (each one a quirk of
the document, not of the emulator):

- ``oneOf`` over choices that overlap, so that no value matches exactly one of them: the
  path ``identifier`` (two plain strings and a third with a pattern-like ``format``),
  merge's ``primary``/``secondary`` (no choice requires its key), ``v2_cio_relationships``
  identifiers (no choice requires its key), ``anonymousEventsRequest`` and the v1 metrics
  (their choices share names and fields). They are read as ``anyOf``, with each choice
  requiring the key it is named after, which is what their descriptions say.
- ``eventsRequest``'s screen view requires ``anonymous_id``, copied from the anonymous event:
  the person is in the path, so it is not required here.
- ``object_identifiers`` and the ``v2_cio_relationships`` entries do not require their
  ``identifiers``, which name the object or person the operation is about.
- ``/api/v2/batch`` does not require its ``batch`` list, nor an item in it.
- The delivery operation's ``identifiers.id`` (the delivery) is described but not required.
- No request body is marked ``required``, though each describes required fields: all are
  sent.
- Required names and ids may be empty strings by the schema, where the text requires them
  ("name (required)", "not nullable" ids, phones, delivery ids and device tokens, names
  trimmed, and an identify's ``id``, whose
  empty value Customer.io answers "id attribute must be present"): generated non-blank.
- Limits written in prose only ("ID 150 bytes", "event name 100 bytes", attribute names 150
  and values 1000 bytes, 300 attributes, 32 KB per v2 request): generated strings are bounded
  where the schema names the field, and a positive request the emulator refuses must hold a
  value over one of those sizes (measured here, independently of the emulator).
- ``format: ulid`` / ``ULID`` (event ids) is a format no generator knows: generated as ULIDs.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from ulid import ULID

from cio_relay.emulator import EmulatorConfig, create_app
from cio_relay.emulator.config import DEFAULT_SITE_ID, DEFAULT_TRACK_API_KEY

from .openapi import document

# Bounded so that the whole test stays well under a minute on a shared machine.
EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 15}
_ID_CHARS = 150 // 4  # "ID 150 bytes": at most 4 UTF-8 bytes a character
_NAME_CHARS = 100 // 4  # "event name 100 bytes"
_PROSE_LIMIT_BYTES = 150  # the smallest documented size limit a refusal may point at

# Event ids are ULIDs (the document's own format names; no generator knows them).
_ULIDS = st.builds(lambda: str(ULID()))
schemathesis.openapi.format("ulid", _ULIDS)
schemathesis.openapi.format("ULID", _ULIDS)

_BASIC = "Basic " + base64.b64encode(f"{DEFAULT_SITE_ID}:{DEFAULT_TRACK_API_KEY}".encode()).decode()


def _any_of(schema: dict[str, Any], keys: tuple[str, ...] = ()) -> None:
    """A ``oneOf`` whose choices overlap, read as ``anyOf``; ``keys[i]`` (when given) is the
    key the i-th choice is named after, now required by it."""
    schema["anyOf"] = schema.pop("oneOf")
    for choice, key in zip(schema["anyOf"], keys, strict=False):
        choice["required"] = [key]


def _read_as_described(raw: dict[str, Any]) -> dict[str, Any]:
    """``track-api.json`` with the quirks listed in the module docstring undone."""
    loaded = copy.deepcopy(raw)
    schemas = loaded["components"]["schemas"]
    parameters = loaded["components"]["parameters"]
    for name in ("track_customer_id", "trackEvent_customer_id"):
        parameters[name]["schema"] = {"type": "string", "minLength": 1, "maxLength": _ID_CHARS}
    merge = loaded["paths"]["/api/v1/merge_customers"]["post"]["requestBody"]["content"]
    for side in ("primary", "secondary"):
        _any_of(merge["application/json"]["schema"]["properties"][side], ("id", "email", "cio_id"))
    schemas["object_identifiers"]["required"] = ["identifiers"]
    schemas["v2_cio_relationships"]["items"]["required"] = ["identifiers"]
    relationship = schemas["v2_cio_relationships"]["items"]["properties"]["identifiers"]
    _any_of(relationship, ("id", "email", "cio_id"))
    _any_of(schemas["anonymousEventsRequest"])
    metrics = loaded["paths"]["/api/v1/metrics"]["post"]["requestBody"]["content"]
    _any_of(metrics["application/json"]["schema"])
    screen = schemas["eventsRequest"]["oneOf"][2]
    screen["required"] = [key for key in screen["required"] if key != "anonymous_id"]
    schemas["delivery_operations"]["properties"]["identifiers"]["required"] = ["id"]
    for name in ("not_nullable_customer_id", "customer_id"):
        schemas[name].update(minLength=1, maxLength=_ID_CHARS)
    for name in ("not_nullable_email_address", "cio_id", "anonymous_id", "object_type_id"):
        schemas[name]["minLength"] = 1
    batch = loaded["paths"]["/api/v2/batch"]["post"]["requestBody"]["content"]
    batch_schema = batch["application/json"]["schema"]
    batch_schema["required"] = ["batch"]
    batch_schema["properties"]["batch"]["minItems"] = 1
    identify = loaded["paths"]["/api/v1/customers/{identifier}"]["put"]["requestBody"]
    identify["content"]["application/json"]["schema"]["properties"]["id"]["minLength"] = 1
    for operations in loaded["paths"].values():
        for operation in operations.values():
            if isinstance(operation, dict) and "requestBody" in operation:
                operation["requestBody"]["required"] = True
    _bound_names(loaded)
    return loaded


# Fields that name something (non-empty wherever they appear) and their prose limits in
# characters (0: none).
_BOUNDED = {
    "name": _NAME_CHARS,
    "object_id": _ID_CHARS,
    "cio_object_id": 0,
    "delivery_id": 0,
    "token": 0,
    "id": 0,
    "phone": 0,
}


def _bound_names(node: Any) -> None:
    """Names, ids and tokens non-empty and within their prose limits, wherever they are."""
    if isinstance(node, dict):
        properties = node.get("properties")
        if isinstance(properties, dict):
            for key, limit in _BOUNDED.items():
                field = properties.get(key)
                if isinstance(field, dict) and field.get("type") == "string":
                    field.setdefault("minLength", 1)
                    if limit:
                        field.setdefault("maxLength", limit)
                    if key == "name":  # names are trimmed: a blank one is no name
                        field.setdefault("pattern", r"\S")
        for value in node.values():
            _bound_names(value)
    elif isinstance(node, list):
        for value in node:
            _bound_names(value)


def _strings_and_sizes(value: Any) -> Iterator[int]:
    """The UTF-8 size of every key and string in ``value``, and the JSON size of every value
    under an object key (an attribute value)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield len(key.encode())
            yield len(json.dumps(item, ensure_ascii=False).encode())
            yield from _strings_and_sizes(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings_and_sizes(item)
    elif isinstance(value, str):
        yield len(value.encode())


def _over_a_prose_limit(case: Any) -> bool:
    """Whether the request holds a value past one of the limits the document states in prose
    only: a refusal of it may be right (measured here, not read from the emulator's answer)."""
    body = case.body if isinstance(case.body, (dict, list)) else None
    sizes = list(_strings_and_sizes(body)) if body is not None else []
    sizes.extend(len(str(v).encode()) for v in (case.path_parameters or {}).values())
    many = isinstance(body, dict) and any(
        isinstance(v, dict) and len(v) > 300 for v in body.values()
    )
    return many or any(size > _PROSE_LIMIT_BYTES for size in sizes)


def _documented_security(operation: Any) -> bool:
    return bool(operation.definition.raw.get("security", [{}]))


@pytest.fixture(scope="module")
def schema() -> Any:
    loaded = schemathesis.openapi.from_dict(_read_as_described(document("track-api.json")))
    loaded.app = create_app(EmulatorConfig())
    return loaded


def _documented_operations() -> set[str]:
    paths = document("track-api.json")["paths"]
    return {f"{m.upper()} {path}" for path, ops in paths.items() for m in ops if m != "parameters"}


def _operations(schema: Any) -> list[Any]:
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {operation.label for operation in operations} == _documented_operations()
    return operations


def _check(case: Any, mode: GenerationMode) -> None:
    headers = {"Authorization": _BASIC} if _documented_security(case.operation) else {}
    response = case.call(headers=headers)
    where = f"{case.method} {case.formatted_path} {case.body!r:.300} -> {response.status_code}"
    assert response.status_code < 500, f"5xx: {where} {response.text[:300]}"
    if mode is GenerationMode.POSITIVE and not 200 <= response.status_code < 300:
        assert _over_a_prose_limit(case), f"refused a documented request: {where} {response.text}"


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_emulator_answers_documented_requests(schema: Any, mode: GenerationMode) -> None:
    tried = []
    for operation in _operations(schema):

        @settings(
            max_examples=EXAMPLES[mode],
            deadline=None,
            database=None,
            derandomize=True,  # the same cases every run: CI stays reproducible
            suppress_health_check=list(HealthCheck),
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            _check(case, mode)

        run()
        tried.append(operation.label)
    assert sorted(tried) == sorted(_documented_operations())
