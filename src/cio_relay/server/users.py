"""The user repository in the service: two-way preferences and the ``/v1/users`` routes.

``UserSync.for_relay`` opens the repository beside the relay's outbox (``cio_relay.sync``):
subscription webhooks then update each person's local preferences (server/webhooks.py installs
``preference_handler``), and the ingestion API serves the repository to apps in any language:

- ``PUT /v1/users/{id}`` ``{"attributes": {...}}``: ``sync_user``, the person's whole
  profile; 202 ``{"enqueued": true, "op_ids": [...]}``, or 200 with ``enqueued`` false and no
  op ids when nothing changed since the last sync;
- ``PUT /v1/users/{id}/preferences`` ``{"topics": {"7": false}, "unsubscribed": false}``:
  ``update_preferences``, 202;
- ``DELETE /v1/users/{id}``: ``delete_user`` (suppress, then delete; the state forgotten), 202;
- ``GET /v1/users/{id}``: ``get``, 200 with the state and its ``preference_times``, 404 when
  nothing is known of the person.

``?id_type=email`` or ``cio_id`` names the person otherwise, as on ``/v1/people``.

They take the ingestion API's steps: the bearer key (401), the body cap (413), the same 422
shape (``field``; ``limit``, ``size`` and ``unit`` for a documented limit), 503 with
``Retry-After`` past the outbox's maximum depth. ``Idempotency-Key`` on the writes answers a
replay with the first request's op ids; the key is recorded once the repository committed, so
a crash between the two lets a retry run the write again, which is harmless here: a sync of the
same profile finds nothing changed, preferences and erasure set the same values again.

A Redis outbox cannot hold the repository's state in its own transactions (sync/store.py): the
service then logs once at start that user sync is off and why, subscription webhooks are not
recorded locally (the built-in handlers still run), and every ``/v1/users`` route answers 501
``user_sync_unavailable`` naming ``CIO_RELAY_OUTBOX``: a setting to change, not a request to
retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pydantic
from starlette.datastructures import QueryParams
from starlette.responses import Response
from starlette.types import Receive, Scope

from cio_relay.asgi_body import read_body
from cio_relay.digits import whole_number
from cio_relay.errors import (
    ConfigError,
    OutboxFullError,
    StorageUnavailableError,
    ValidationError,
)
from cio_relay.operations import PersonRef
from cio_relay.relay import Relay
from cio_relay.server import schemas as s
from cio_relay.server.auth import ApiKeys, Principal
from cio_relay.server.build import person_from_path
from cio_relay.server.idempotency import Claim, IdempotencyStore
from cio_relay.server.idempotency_keys import key_refused, key_reused, request_fingerprint
from cio_relay.server.ingest import Answer, path_id
from cio_relay.server.responses import (
    error_response,
    invalid_from_pydantic,
    invalid_from_validation,
    json_response,
    outbox_full,
    storage_unavailable,
    too_large,
    unauthorized,
)
from cio_relay.sync import AsyncUserRepository, UserRepository, UserState, user_store_for

__all__ = ["USER_ROUTES", "UserRoutes", "UserSync", "user_state_body"]

log = logging.getLogger("cio_relay.server")

# (method, path, route name, request model or None) — also what the OpenAPI document lists.
USER_ROUTES: tuple[tuple[str, str, str, type[pydantic.BaseModel] | None], ...] = (
    ("PUT", "/v1/users/{id}", "sync_user", s.SyncUserBody),
    ("GET", "/v1/users/{id}", "get_user", None),
    ("DELETE", "/v1/users/{id}", "delete_user", None),
    ("PUT", "/v1/users/{id}/preferences", "update_preferences", s.PreferencesBody),
)


class UserSync:
    """The service's user repository (sync, for the webhook pipeline's thread, and async, for
    the routes, over one store), or why there is none (``unavailable``)."""

    def __init__(
        self,
        repository: UserRepository | None,
        async_repository: AsyncUserRepository | None,
        unavailable: str | None = None,
    ) -> None:
        self.repository = repository
        self.async_repository = async_repository
        self.unavailable = unavailable

    @classmethod
    def for_relay(cls, relay: Relay) -> UserSync:
        """Beside ``relay``'s outbox; without one that can hold it, says so once in the log."""
        try:
            store = user_store_for(relay.outbox)
        except ConfigError as refused:
            log.warning(
                "user sync is off: subscription webhooks are not recorded in the local user "
                "state and /v1/users answers 501, because %s",
                refused,
            )
            return cls(None, None, str(refused))
        return cls(UserRepository(relay, store), AsyncUserRepository(relay, store))


def user_state_body(state: UserState) -> dict[str, Any]:
    """``GET /v1/users/{id}``'s answer (``schemas.UserStateBody``)."""
    return {
        "id": state.person_id,
        "attributes": dict(state.attributes),
        "topics": dict(state.topics),
        "unsubscribed": state.unsubscribed,
        "updated_at": state.updated_at,
        "preference_times": {
            name: {"at": stamp.at, "source": stamp.source}
            for name, stamp in state.preference_times.items()
        },
    }


def _change(op_ids: list[str], *, replayed: bool = False) -> Response:
    """202 with the op ids when something was enqueued, else 200 (nothing changed)."""
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    body = {"enqueued": bool(op_ids), "op_ids": op_ids}
    return json_response(body, 202 if op_ids else 200, headers)


# A write of the repository for one person and its parsed body: the op ids it enqueued.
_Write = Callable[[AsyncUserRepository, PersonRef, Any], Awaitable[list[str]]]


async def _sync_user(
    users: AsyncUserRepository, person: PersonRef, body: s.SyncUserBody
) -> list[str]:
    return await users.sync_user_op_ids(person, body.attributes)


async def _update_preferences(
    users: AsyncUserRepository, person: PersonRef, body: s.PreferencesBody
) -> list[str]:
    topics: dict[str | int, bool] = {topic: on for topic, on in (body.topics or {}).items()}
    return [await users.update_preferences(person, topics=topics, unsubscribed=body.unsubscribed)]


async def _delete_user(users: AsyncUserRepository, person: PersonRef, body: None) -> list[str]:
    return await users.delete_user(person)


class UserRoutes:
    """The answers of ``USER_ROUTES`` (module docstring), for ``Ingestion(answered=...)``."""

    def __init__(
        self,
        *,
        users: UserSync,
        keys: ApiKeys,
        idempotency: IdempotencyStore,
        max_body: int,
    ) -> None:
        self.users = users
        self.keys = keys
        self.idempotency = idempotency
        self.max_body = max_body
        self._inflight: dict[tuple[str, str], _KeyLock] = {}

    def answered(self) -> list[tuple[str, str, str, Answer]]:
        """(method, path, route name, answer) of every route, for ``Ingestion``."""
        writes: dict[str, _Write] = {
            "sync_user": _sync_user,
            "update_preferences": _update_preferences,
            "delete_user": _delete_user,
        }
        answers: list[tuple[str, str, str, Answer]] = []
        for method, path, name, model in USER_ROUTES:
            answer = self._read if name == "get_user" else self._writer(model, writes[name])
            answers.append((method, path, name, answer))
        return answers

    def _principal(self, scope: Scope) -> tuple[Principal | None, dict[bytes, bytes]]:
        headers = dict(reversed(scope["headers"]))  # the first of repeated headers wins
        authorization = headers.get(b"authorization")
        principal = self.keys.from_authorization(
            authorization.decode("latin-1") if authorization is not None else None
        )
        return principal, headers

    def _unavailable(self) -> Response:
        return error_response(501, "user_sync_unavailable", self.users.unavailable or "")

    async def _read(self, scope: Scope, receive: Receive) -> Response | None:
        principal, _ = self._principal(scope)
        if principal is None:
            return unauthorized()
        users = self.users.async_repository
        if users is None:
            return self._unavailable()
        try:
            person = _path_person(scope)
            state = await users.get(person)
        except ValidationError as exc:
            return invalid_from_validation(exc)
        if state is None:
            return error_response(404, "not_found", "nothing is known of this person")
        return json_response(user_state_body(state))

    def _writer(self, model: type[pydantic.BaseModel] | None, write: _Write) -> Answer:
        async def answer(scope: Scope, receive: Receive) -> Response | None:
            return await self._write(scope, receive, model, write)

        return answer

    async def _write(
        self,
        scope: Scope,
        receive: Receive,
        model: type[pydantic.BaseModel] | None,
        write: _Write,
    ) -> Response | None:
        principal, headers = self._principal(scope)
        if principal is None:
            return unauthorized()
        body = await read_body(receive, self.max_body, whole_number(headers.get(b"content-length")))
        if not isinstance(body, bytes):
            return too_large(body) if body is not None else None
        try:
            parsed = None if model is None else model.__pydantic_validator__.validate_json(body)
            person = _path_person(scope)
        except pydantic.ValidationError as exc:
            return invalid_from_pydantic(exc, body)
        except ValidationError as exc:
            return invalid_from_validation(exc)
        users = self.users.async_repository
        if users is None:
            return self._unavailable()
        key = headers.get(b"idempotency-key")
        try:
            if key is None:
                return _change(await write(users, person, parsed))
            return await self._idempotent(
                scope,
                principal,
                key.decode("latin-1"),
                parsed,
                lambda: write(users, person, parsed),
            )
        except ValidationError as exc:  # a limit or a value the repository refuses
            return invalid_from_validation(exc)
        except OutboxFullError as exc:
            return outbox_full(exc)
        except StorageUnavailableError as exc:
            return storage_unavailable(exc)

    async def _idempotent(
        self,
        scope: Scope,
        principal: Principal,
        key: str,
        parsed: pydantic.BaseModel | None,
        write: Callable[[], Awaitable[list[str]]],
    ) -> Response:
        if (refused := key_refused(key)) is not None:
            return refused
        print_ = request_fingerprint(scope, parsed)
        async with self._holding((principal.scope, key)):
            seen = await asyncio.to_thread(self.idempotency.lookup, principal.scope, key)
            if seen is not None and seen.fingerprint != print_:
                return key_reused()
            if seen is not None and seen.done:
                return _change(seen.op_ids, replayed=True)
            op_ids = await write()
            claim = Claim(principal.scope, key, print_, tuple(op_ids))
            await asyncio.to_thread(self._remember, claim)
        return _change(op_ids)

    def _remember(self, claim: Claim) -> None:
        try:
            self.idempotency.reserve([claim])
            self.idempotency.complete([claim])
        except Exception as exc:  # the write is committed: only the replay is lost
            raise StorageUnavailableError("idempotency store", exc) from exc

    @contextlib.asynccontextmanager
    async def _holding(self, slot: tuple[str, str]) -> AsyncIterator[None]:
        """One request per key at a time: a second one waits, then answers as a replay."""
        held = self._inflight.setdefault(slot, _KeyLock())
        held.users += 1
        try:
            async with held.lock:
                yield
        finally:
            held.users -= 1
            if not held.users:
                del self._inflight[slot]


class _KeyLock:
    """An idempotency key's lock and how many requests hold or wait for it."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


def _path_person(scope: Scope) -> PersonRef:
    """``/v1/users/{id}?id_type=email``: as the other routes name people (the repository
    refuses ``phone``: it keeps people by id, email or cio_id)."""
    query: bytes = scope["query_string"]
    id_type = QueryParams(query).get("id_type") if query else None
    return person_from_path(path_id(scope), id_type)
