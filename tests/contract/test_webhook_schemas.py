"""Contract 7(c): every reporting webhook Customer.io documents is a known typed event.

For every schema of ``reporting-webhooks.json``'s ``reportingWebhook`` (each ``object_type`` x
``metric``), instances are built from the schema itself: its required fields, each filled with
the field's ``example`` (else its first ``enum`` value, else a value of its type), one instance
per branch of every ``oneOf``/``anyOf`` (a ``data`` from an API-triggered broadcast, a campaign,
a newsletter ...) and per value of every ``enum`` (a subscription change from each channel).
(hypothesis-jsonschema is not installed, so the instances are built here; each one is checked
against its schema first, so a bug in the builder cannot pass for a contract.)

Each instance must parse as a known event (not ``UnknownEvent``) with the identifiers,
delivery id and channel the payload carries, and must flow through the receiver (signed, a
real ASGI call) into the inbox and from there into the lake.

Quirk of the document (see its README): ``person_cio_subscription_preferences_changed`` names
its channel field ``object_type_type`` and has no ``object_type``; the instances keep that
shape, and the parser reads the channel from it.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema_rs
import orjson
import pytest

from cio_relay.lake.memory import MemoryLake
from cio_relay.webhooks.events import SUBSCRIPTION_METRICS, UnknownEvent, parse_event
from cio_relay.webhooks.inbox import MemoryInbox
from cio_relay.webhooks.pipeline import WebhookPipeline
from cio_relay.webhooks.receiver import WebhookReceiver
from cio_relay.webhooks.router import Router
from cio_relay.webhooks.signature import signature_headers
from tests.contract.openapi import document

DOCUMENT = "reporting-webhooks.json"
KEY = "contract-signing-key"
NOW = 1_700_000_000
_TYPE_DEFAULTS: dict[str, Any] = {
    "string": "x",
    "integer": 1,
    "number": 1,
    "boolean": True,
    "null": None,
    "array": [],
}


def _schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = document(DOCUMENT)["components"]["schemas"]
    return schemas


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = _schemas()[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


class _Builder:
    """A minimal valid instance of a schema; ``choice`` picks the branch of every ``oneOf`` and
    the value of every ``enum`` (the last one when there are fewer), and ``widest`` records the
    most choices any point offered, so that choices ``0..widest-1`` visit every branch."""

    def __init__(self, choice: int) -> None:
        self.choice = choice
        self.widest = 1

    def _pick(self, options: list[Any]) -> Any:
        self.widest = max(self.widest, len(options))
        return options[min(self.choice, len(options) - 1)]

    def build(self, schema: dict[str, Any]) -> Any:
        schema = _resolve(schema)
        if "allOf" in schema:
            merged: dict[str, Any] = {}
            for part in schema["allOf"]:
                value = self.build(part)
                if isinstance(value, dict):
                    merged.update(value)
            return self._object(schema, merged)
        for key in ("oneOf", "anyOf"):
            if key in schema:
                return self._object(schema, self.build(self._pick(schema[key])))
        if "enum" in schema:
            return self._pick(schema["enum"])
        if "example" in schema:
            return schema["example"]
        kind = schema.get("type", "object")
        if isinstance(kind, list):
            kind = kind[0]
        if kind == "object" or "properties" in schema:
            return self._object(schema, {})
        return _TYPE_DEFAULTS[kind]

    def _object(self, schema: dict[str, Any], found: Any) -> Any:
        """``found`` with the schema's own required properties added, and its optional ones
        that take an enum (``object_type_type``: the channel of a preferences change)."""
        if not isinstance(found, dict) or not ("properties" in schema or "required" in schema):
            return found
        properties = schema.get("properties", {})
        optional_enums = [n for n, p in properties.items() if "enum" in _resolve(p)]
        for name in (*schema.get("required", ()), *optional_enums):
            # A required name the schema does not describe (email_failed's ``recipient``)
            # may be any value: a string, as its siblings are.
            value = self.build(properties[name]) if name in properties else "x"
            if isinstance(value, dict) and isinstance(found.get(name), dict):
                found[name] = {**value, **found[name]}
            elif name not in found or name in schema.get("required", ()):
                found[name] = value
        return found


def _event_schemas() -> list[str]:
    body = document(DOCUMENT)["webhooks"]["reportingWebhook"]["post"]["requestBody"]
    names: list[str] = []
    for channel in body["content"]["application/json"]["schema"]["oneOf"]:
        family = _schemas()[channel["$ref"].rsplit("/", 1)[-1]]
        names.extend(choice["$ref"].rsplit("/", 1)[-1] for choice in family["oneOf"])
    return names


@functools.cache
def _validator(name: str) -> Any:
    root = {"$ref": f"#/components/schemas/{name}", "components": document(DOCUMENT)["components"]}
    return jsonschema_rs.validator_for(root)


def _instances(name: str) -> Iterator[dict[str, Any]]:
    """One instance per choice until every branch and enum value was visited."""
    schema = {"$ref": f"#/components/schemas/{name}"}
    for choice in itertools.count():
        builder = _Builder(choice)
        instance = builder.build(schema)
        yield instance
        if choice + 1 >= builder.widest:
            return


def _cases() -> list[tuple[str, int, dict[str, Any]]]:
    counter = itertools.count(1)
    cases: list[tuple[str, int, dict[str, Any]]] = []
    for name in _event_schemas():
        for variant, instance in enumerate(_instances(name)):
            instance["event_id"] = f"01CONTRACT{next(counter):016d}"  # unique per instance
            cases.append((name, variant, instance))
    return cases


CASES = _cases()


def test_every_documented_webhook_schema_has_instances() -> None:
    names = {name for name, _, _ in CASES}
    assert names == set(_event_schemas())
    assert len(names) == 69  # 3 subscription changes + 66 message events in the document
    channels = {
        instance.get("object_type", instance.get("object_type_type"))
        for name, _, instance in CASES
        if name.startswith("person_")
    }
    assert channels == {
        "customer",
        "email",
        "sms",
        "push",
        "in_app",
        "slack",
        "webhook",
        "whatsapp",
    }


@pytest.mark.parametrize(
    ("name", "variant", "instance"), CASES, ids=[f"{n}-{v}" for n, v, _ in CASES]
)
def test_each_instance_is_a_known_typed_event_with_its_fields(
    name: str, variant: int, instance: dict[str, Any]
) -> None:
    _validator(name).validate(instance)  # the builder made what the document describes
    event = parse_event(orjson.dumps(instance))
    assert not isinstance(event, UnknownEvent) and event.KNOWN, event.name
    channel = instance.get("object_type") or instance.get("object_type_type") or "customer"
    metric = instance["metric"]
    assert (event.channel, event.metric, event.name) == (channel, metric, f"{channel}_{metric}")
    data = instance["data"]
    assert event.delivery_id == data.get("delivery_id")
    if metric not in SUBSCRIPTION_METRICS:
        assert event.delivery_id  # every message event names its delivery
    identifiers = {k: str(v) for k, v in data["identifiers"].items() if v is not None}
    assert event.identifiers.items() >= identifiers.items() and identifiers


def test_every_instance_flows_through_the_receiver_into_the_lake() -> None:
    inbox = MemoryInbox()
    lake = MemoryLake()
    receiver = WebhookReceiver(inbox, [KEY], clock=lambda: float(NOW))

    async def post_all() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=receiver)
        async with httpx.AsyncClient(transport=transport, base_url="http://relay.test") as client:
            answers = []
            for _, _, instance in CASES:
                body = orjson.dumps(instance)
                headers = signature_headers(KEY, body, timestamp=NOW)
                answers.append(
                    await client.post("/webhooks/customerio", content=body, headers=headers)
                )
            return answers

    answers = asyncio.run(post_all())
    assert [(a.status_code, a.json()) for a in answers] == [
        (200, {"status": "stored"}) for _ in CASES
    ]
    WebhookPipeline(inbox, Router(), lake).drain()
    rows = {row.event_id: row for row in lake.events}
    assert len(rows) == len(CASES)
    for _, _, instance in CASES:
        row = rows[instance["event_id"]]
        assert row.metric == instance["metric"]
        assert row.delivery_id == instance["data"].get("delivery_id")
        assert row.occurred_at == float(instance["timestamp"])
    assert inbox.counts().quarantined == 0
