"""The service's OpenAPI 3.1 document (``GET /openapi.json``), built once from the models.

Request and response schemas come from ``server/schemas.py`` (pydantic emits JSON Schema 2020-12,
which is what OpenAPI 3.1 uses); the ingestion paths come from ``INGEST_ROUTES`` and
``USER_ROUTES`` (server/users.py), so a route cannot be served without being documented. The
test suite runs schemathesis against this document.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from cio_relay import __version__
from cio_relay.operations import IDENTIFIER_TYPES
from cio_relay.server import schemas as s
from cio_relay.server.ingest import INGEST_ROUTES
from cio_relay.server.users import USER_ROUTES

__all__ = ["openapi_document"]

_REF = "#/components/schemas/{model}"
_JSON = "application/json"
_HTML = "text/html"
_FORM = "application/x-www-form-urlencoded"
_NO_AUTH: list[dict[str, list[str]]] = []
_DASHBOARD_AUTH: list[dict[str, list[str]]] = [{"bearer": []}, {"session": []}]
_SUMMARIES = {
    "identify": "Create or update a person",
    "delete": "Delete a person",
    "track": "Track an event (or a page or screen view) for a person",
    "suppress": "Suppress a person (delete and stop them being added again)",
    "unsuppress": "Unsuppress a person",
    "track_anonymous": "Track an event for someone not yet identified",
    "send_email": "Send a transactional email",
    "trigger_broadcast": "Trigger an API-triggered broadcast",
    "send_whatsapp": "Send a transactional WhatsApp message from its template",
    "send_in_app": "Send a transactional in-app message from its template",
    "send_inbox_message": "Send a transactional inbox message from its template",
    "add_relationships": "Relate a person to objects",
    "delete_relationships": "Remove a person's relationships to objects",
    "identify_object": "Create or update an object, related to people where given",
    "delete_object": "Delete an object and its relationships",
    "identify_anonymous": "Create or update an object related to someone not identified yet",
    "add_object_relationships": "Relate an object to people",
    "delete_object_relationships": "Remove an object's relationships to people",
    "add_to_segment": "Add people to a manual segment",
    "remove_from_segment": "Remove people from a manual segment",
    "track_metric": "Report a delivery metric (a channel that does not report back itself)",
    "track_push_metric": "Report a device-side push metric, the legacy way (deprecated)",
    "batch": "Many operations of mixed kinds, stored all together or not at all",
    "sync_user": "Sync a person's whole profile: only what changed since the last sync is sent",
    "get_user": "What cio-relay knows of a person: as last synced, with their preferences",
    "delete_user": "Erase a person: suppress, then delete at Customer.io; forgotten here",
    "update_preferences": "Set a person's subscription topics and/or global unsubscribe",
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema}}}


def _html(description: str) -> dict[str, Any]:
    return {"description": description, "content": {_HTML: {"schema": {"type": "string"}}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref(s.ErrorBody), description)


_REQUEST_ID = {
    "name": "X-Request-Id",
    "in": "header",
    "required": False,
    "description": "Echoed back; made up when absent or not an id",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
}
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "The same key with the same request answers the same op ids, once (24 h)",
    "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
}
_PERSON_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "The person's id (or email / phone / cio_id with id_type); no '/'",
    "schema": {"type": "string", "pattern": "^[^/]+$"},
}
_ID_TYPE = {
    "name": "id_type",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "enum": list(IDENTIFIER_TYPES), "default": "id"},
}
_BROADCAST_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "The numeric id of an API-triggered broadcast",
    "schema": {"type": "string", "pattern": "^[^/]+$"},
}

_SEGMENT_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "The numeric id of a manual segment",
    "schema": {"type": "string", "pattern": "^[^/]+$"},
}
_OBJECT_PATH = [
    {
        "name": "object_type_id",
        "in": "path",
        "required": True,
        "description": "The object type's id, a whole number from 1",
        "schema": {"type": "string", "pattern": "^[^/]+$"},
    },
    {
        "name": "object_id",
        "in": "path",
        "required": True,
        "description": "The object's id in its type (up to 150 bytes); no '/': an object "
        "named so, or by cio_object_id, goes in POST /v1/batch",
        "schema": {"type": "string", "pattern": "^[^/]+$"},
    },
]
_USER_ID_TYPE = {
    "name": "id_type",
    "in": "query",
    "required": False,
    "description": "The user repository keeps people by id, email or cio_id",
    "schema": {"type": "string", "enum": ["id", "email", "cio_id"], "default": "id"},
}
# The path parameters of the ingestion routes, by the path's first segments.
_PATH_PARAMETERS: dict[str, list[dict[str, Any]]] = {
    "/v1/people/": [_PERSON_ID, _ID_TYPE],
    "/v1/users/": [_PERSON_ID, _USER_ID_TYPE],
    "/v1/broadcasts/": [_BROADCAST_ID],
    "/v1/segments/": [_SEGMENT_ID],
    "/v1/objects/": _OBJECT_PATH,
}


def _path_parameters(path: str) -> list[dict[str, Any]]:
    for prefix, parameters in _PATH_PARAMETERS.items():
        if path.startswith(prefix):
            return parameters
    return []


def _ingest_operation(path: str, name: str, model: type[BaseModel] | None) -> dict[str, Any]:
    parameters = [*_path_parameters(path), _IDEMPOTENCY_KEY, _REQUEST_ID]
    operation: dict[str, Any] = {
        "operationId": name,
        "summary": _SUMMARIES[name],
        "tags": ["ingestion"],
        "parameters": parameters,
        "responses": {
            "202": _json(_ref(s.Accepted), "Durable in the outbox; workers deliver it"),
            "401": _error("No valid bearer key"),
            "413": _error("The body is larger than the cap"),
            "422": _error("Invalid: names the field, and the limit and size for a limit"),
            "503": {
                **_error("The outbox is past its maximum depth: retry later"),
                "headers": {"Retry-After": {"schema": {"type": "integer"}}},
            },
        },
    }
    if model is not None:
        operation["requestBody"] = {
            "required": model not in s.OPTIONAL_BODIES,
            "content": {_JSON: {"schema": _ref(model)}},
        }
    return operation


_USER_RESPONSES: dict[str, dict[str, Any]] = {
    "200": _json(_ref(s.UserChange), "Nothing changed since the last sync: nothing enqueued"),
    "202": _json(_ref(s.UserChange), "Recorded, and its operations durable in the outbox"),
    "401": _error("No valid bearer key"),
    "404": _error("Nothing is known of this person"),
    "413": _error("The body is larger than the cap"),
    "422": _error("Invalid: names the field, and the limit and size for a limit"),
    "501": _error(
        "The outbox cannot hold the user repository's state (CIO_RELAY_OUTBOX is Redis): "
        "use a sqlite:/// outbox"
    ),
    "503": {
        **_error("The outbox is past its maximum depth: retry later"),
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    },
}
# Which answers each /v1/users route gives.
_USER_STATUSES = {
    "sync_user": ("200", "202", "401", "413", "422", "501", "503"),
    "update_preferences": ("202", "401", "413", "422", "501", "503"),
    "delete_user": ("202", "401", "413", "422", "501", "503"),
    "get_user": ("200", "401", "404", "422", "501"),
}


def _user_operation(path: str, name: str, model: type[BaseModel] | None) -> dict[str, Any]:
    """A ``/v1/users`` route (server/users.py): the user repository's answers."""
    write = name != "get_user"
    responses = {status: _USER_RESPONSES[status] for status in _USER_STATUSES[name]}
    if not write:
        responses["200"] = _json(_ref(s.UserStateBody), "The person's local state")
    operation: dict[str, Any] = {
        "operationId": name,
        "summary": _SUMMARIES[name],
        "tags": ["users"],
        "parameters": [
            *_path_parameters(path),
            *([_IDEMPOTENCY_KEY] if write else []),
            _REQUEST_ID,
        ],
        "responses": responses,
    }
    if model is not None:
        operation["requestBody"] = {"required": True, "content": {_JSON: {"schema": _ref(model)}}}
    return operation


def _health_paths() -> dict[str, Any]:
    status = {"type": "object", "properties": {"status": {"type": "string"}}}
    ready = {
        "type": "object",
        "required": ["status", "checks"],
        "properties": {
            "status": {"type": "string", "enum": ["ready", "not_ready"]},
            "checks": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    return {
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "The process is alive",
                "tags": ["operations"],
                "security": _NO_AUTH,
                "responses": {"200": _json(status, "Alive")},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Outbox writable, workers alive, Customer.io or the emulator reachable",
                "tags": ["operations"],
                "security": _NO_AUTH,
                "responses": {"200": _json(ready, "Ready"), "503": _json(ready, "Not ready")},
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics (bearer key unless CIO_RELAY_METRICS_PUBLIC)",
                "tags": ["operations"],
                "responses": {
                    "200": {
                        "description": "Text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "401": _error("No valid bearer key"),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "tags": ["operations"],
                "security": _NO_AUTH,
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
            }
        },
    }


def _form(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "required": False,
        "content": {_FORM: {"schema": {"type": "object", "properties": properties}}},
    }


def _dashboard_paths() -> dict[str, Any]:
    redirect = {
        "description": "Done, or not logged in: redirect",
        "headers": {"Location": {"schema": {"type": "string"}}},
    }
    page = {
        "tags": ["dashboard"],
        "security": _DASHBOARD_AUTH,
        "responses": {"200": _html("The page"), "303": redirect, "422": _html("Bad query")},
    }
    filters = {
        "kind": {"type": "string"},
        "reason": {"type": "string"},
        "older_than": {"type": "string"},
    }
    action = {
        "tags": ["dashboard"],
        "security": _DASHBOARD_AUTH,
        "requestBody": _form(
            {
                "csrf": {"type": "string"},
                "op_id": {"type": "string"},
                "all": {"type": "string"},
                **filters,
            }
        ),
        "responses": {
            "303": redirect,
            "403": _html("Read-only, or the CSRF token is missing or stale"),
            "413": _html("The form is too large"),
            "422": _html("No operation or filter named, or a bad filter"),
        },
    }
    query = [
        {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
        for name in ("kind", "reason", "older_than", "offset", "limit")
    ]
    return {
        "/dashboard": {"get": {**page, "operationId": "dashboard", "summary": "Overview"}},
        "/dashboard/dead-letters": {
            "get": {
                **page,
                "operationId": "dashboard_dead_letters",
                "summary": "Dead letters",
                "parameters": query,
            }
        },
        "/dashboard/dead-letters/replay": {
            "post": {**action, "operationId": "dashboard_replay", "summary": "Replay dead letters"}
        },
        "/dashboard/dead-letters/purge": {
            "post": {**action, "operationId": "dashboard_purge", "summary": "Purge dead letters"}
        },
        "/dashboard/webhooks": {
            "get": {
                **page,
                "operationId": "dashboard_webhooks",
                "summary": "Recent webhooks",
                "parameters": [query[3]],
            }
        },
        "/dashboard/login": {
            "get": {
                "operationId": "dashboard_login_page",
                "summary": "Login form",
                "tags": ["dashboard"],
                "security": _NO_AUTH,
                "parameters": [
                    {"name": "next", "in": "query", "required": False, "schema": {"type": "string"}}
                ],
                "responses": {"200": _html("The form")},
            },
            "post": {
                "operationId": "dashboard_login",
                "summary": "Log in with an API key: sets the session cookie",
                "tags": ["dashboard"],
                "security": _NO_AUTH,
                "requestBody": _form({"key": {"type": "string"}, "next": {"type": "string"}}),
                "responses": {
                    "303": redirect,
                    "401": _html("Wrong key"),
                    "429": {
                        **_html("Too many failed logins: try again after Retry-After seconds"),
                        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                    },
                },
            },
        },
        "/dashboard/logout": {
            "post": {
                "operationId": "dashboard_logout",
                "summary": "End the session",
                "tags": ["dashboard"],
                "security": _DASHBOARD_AUTH,
                "requestBody": _form({"csrf": {"type": "string"}}),
                "responses": {
                    "303": redirect,
                    "403": _html("Missing or stale CSRF token"),
                    "413": _html("Too large"),
                    "503": _html("The logout could not be recorded on the server"),
                },
            }
        },
    }


def _webhook_path() -> dict[str, Any]:
    signed = [
        {"name": "X-CIO-Timestamp", "in": "header", "required": True, "schema": {"type": "string"}},
        {"name": "X-CIO-Signature", "in": "header", "required": True, "schema": {"type": "string"}},
    ]
    return {
        "/webhooks/customerio": {
            "post": {
                "operationId": "customerio_webhook",
                "summary": "Customer.io reporting webhooks, signed with the webhook signing key",
                "tags": ["webhooks"],
                "security": _NO_AUTH,
                "parameters": signed,
                "requestBody": {
                    "required": True,
                    "content": {_JSON: {"schema": {"type": "object"}}},
                },
                "responses": {
                    "200": {
                        "description": "Stored (or a duplicate, or quarantined; past the "
                        "body cap, stored as its fields and marked truncated)"
                    },
                    "401": {"description": "Signature or timestamp did not verify"},
                    "503": {"description": "Storage unavailable: Customer.io retries"},
                },
            }
        }
    }


#: The response bodies (their serialization schemas).
_ANSWERS: tuple[type[BaseModel], ...] = (s.Accepted, s.ErrorBody, s.UserChange, s.UserStateBody)


def openapi_document(*, webhooks: bool = True) -> dict[str, Any]:
    """The whole document; ``webhooks`` says whether the webhook route is served."""
    models: list[type[BaseModel]] = [
        *(m for _, _, _, m in (*INGEST_ROUTES, *USER_ROUTES) if m is not None),
        *_ANSWERS,
    ]
    _, top = models_json_schema(
        [(m, "serialization" if m in _ANSWERS else "validation") for m in models],
        ref_template=_REF,
    )
    paths: dict[str, Any] = {}
    for method, path, name, model in INGEST_ROUTES:
        paths.setdefault(path, {})[method.lower()] = _ingest_operation(path, name, model)
    for method, path, name, model in USER_ROUTES:
        paths.setdefault(path, {})[method.lower()] = _user_operation(path, name, model)
    paths.update(_health_paths())
    paths.update(_dashboard_paths())
    if webhooks:
        paths.update(_webhook_path())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "cio-relay",
            "version": __version__,
            "description": (
                "Durable ingestion for Customer.io: each call validates, writes to the outbox "
                "and answers 202 with op ids; workers deliver."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": top.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "cio_relay_session"},
            },
        },
    }
