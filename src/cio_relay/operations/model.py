"""The ``Operation`` record: one durable unit of work, what to tell Customer.io and about whom.

Everything else passes Operations around: the outbox stores them (``to_record``/``from_record``),
the dispatcher turns them into requests (``v1_request``, ``v2_item``, see ``wire``). They are
built by ``builders.OperationFactory``, which checks them; nothing here checks again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from cio_relay import kept_json
from cio_relay.operations.ids import checked_op_id, new_op_id
from cio_relay.operations.kinds import API_OF, NON_IDEMPOTENT_KINDS, OBJECT_KINDS, Api, Kind
from cio_relay.operations.wire import V1_REQUESTS, V2_ITEMS, Request

__all__ = [
    "IDENTIFIER_TYPES",
    "NO_ENV",
    "Identifiers",
    "Operation",
    "OperationMaker",
    "PersonRef",
    "new_operation",
]

#: The ways to name a person; an operation about a person holds exactly one.
IDENTIFIER_TYPES = ("id", "email", "phone", "cio_id")
Identifiers = dict[str, str]
#: A person as callers name them: an id, or one of ``{"id": ...}``, ``{"email": ...}``,
#: ``{"phone": ...}`` (E.164; travels on ``/api/v2`` only), ``{"cio_id": ...}``.
PersonRef = str | Mapping[str, str]
#: The environment of an operation built by hand (no relay's): the relay that enqueues it gives
#: it its own.
NO_ENV = ""


@dataclass(frozen=True, slots=True)
class Operation:
    """One durable unit of work: what to tell Customer.io, and about whom.

    ``identifiers`` holds exactly one of ``id``/``email``/``phone``/``cio_id`` for person
    operations; it is empty for anonymous events, broadcast triggers, objects (named in
    ``payload["object"]``), segment membership and delivery metrics. ``person_key`` orders
    delivery (contract 3).
    ``env`` is the environment of the relay that enqueued it (``NO_ENV`` before that).
    """

    op_id: str
    kind: Kind
    identifiers: Identifiers
    payload: dict[str, Any]
    created_at: float = field(default_factory=time.time)
    env: str = NO_ENV

    @property
    def api(self) -> Api:
        return API_OF[self.kind]

    @property
    def idempotent(self) -> bool:
        return self.kind not in NON_IDEMPOTENT_KINDS

    @property
    def person_key(self) -> str:
        """The ordering key: operations with the same key are delivered in enqueue order."""
        if self.identifiers:
            ((id_type, value),) = self.identifiers.items()
            return f"{id_type}:{value}"
        if self.kind is Kind.TRACK_ANONYMOUS and "anonymous_id" in self.payload:
            return f"anonymous_id:{self.payload['anonymous_id']}"
        keyed = _KEY_OF.get(self.kind)
        return f"op:{self.op_id}" if keyed is None else keyed(self.payload)

    def to_record(self) -> tuple[str, str, str, bytes, float, str]:
        """The columns an outbox stores: op_id, kind, person_key, payload, created_at, env."""
        return (
            self.op_id,
            _KIND_VALUES[self.kind],
            self.person_key,
            kept_json.dumps({"i": self.identifiers, "p": self.payload}),  # kept for a batch
            self.created_at,
            self.env,
        )

    @classmethod
    def from_record(
        cls, op_id: str, kind: str, payload: bytes, created_at: float, env: str
    ) -> Operation:
        body = orjson.loads(payload)
        # What the outbox stored was checked when it was built: no builder runs again here.
        found = _KINDS.get(kind) or Kind(kind)  # Kind() only to raise for an unknown kind
        if cls is Operation:
            return new_operation(op_id, found, body["i"], body["p"], created_at, env)
        return cls(op_id, found, body["i"], body["p"], created_at, env)

    def v1_request(self) -> Request:
        return V1_REQUESTS[self.kind](self)

    def v2_item(self) -> dict[str, Any] | None:
        """The ``/api/v2/batch`` item for this operation, or None where v2 does not apply."""
        build = V2_ITEMS.get(self.kind)
        return None if build is None else build(self)

    def __repr__(self) -> str:
        # Payloads can hold personal data; a repr names the operation, not its contents.
        return (
            f"Operation(op_id={self.op_id!r}, kind={self.kind.value!r}, person={self.person_key!r})"
        )


def _object_key(payload: dict[str, Any]) -> str:
    """An object's operations are ordered by the object: ``object:{type}:{id}``, or
    ``object:cio_object_id:{id}`` for one named by Customer.io's id (which cannot be told to be
    the same object here, so the two names are ordered apart)."""
    named = payload["object"]
    if "cio_object_id" in named:
        return f"object:cio_object_id:{named['cio_object_id']}"
    return f"object:{named['object_type_id']}:{named['object_id']}"


#: The ordering key of the kinds that name no person (see each builder's docstring).
_KEY_OF: dict[Kind, Callable[[dict[str, Any]], str]] = {
    Kind.TRIGGER_BROADCAST: lambda payload: f"broadcast:{payload['broadcast_id']}",
    **dict.fromkeys(OBJECT_KINDS, _object_key),
    Kind.ADD_TO_SEGMENT: lambda payload: f"segment:{payload['segment_id']}",
    Kind.REMOVE_FROM_SEGMENT: lambda payload: f"segment:{payload['segment_id']}",
    Kind.TRACK_METRIC: lambda payload: f"delivery:{payload['delivery_id']}",
    Kind.TRACK_PUSH_METRIC: lambda payload: f"delivery:{payload['delivery_id']}",
}

_KINDS: dict[str, Kind] = {kind.value: kind for kind in Kind}
#: ``kind.value`` is a Python-level enum property; a dict lookup is cheaper.
_KIND_VALUES: dict[Kind, str] = {kind: kind.value for kind in Kind}


# Setting the slots directly skips the frozen dataclass's ``__init__`` (which goes through
# ``object.__setattr__`` per field): it counts on the hot paths, where every operation is built
# once when enqueued and once more when leased.
def _slot_setter(name: str) -> Callable[[Operation, Any], None]:
    setter: Callable[[Operation, Any], None] = vars(Operation)[name].__set__
    return setter


_new_object = object.__new__
_set_op_id = _slot_setter("op_id")
_set_kind = _slot_setter("kind")
_set_identifiers = _slot_setter("identifiers")
_set_payload = _slot_setter("payload")
_set_created_at = _slot_setter("created_at")
_set_env = _slot_setter("env")


def new_operation(
    op_id: str,
    kind: Kind,
    identifiers: Identifiers,
    payload: dict[str, Any],
    created_at: float,
    env: str,
) -> Operation:
    """``Operation(...)`` with every field given, without the dataclass ``__init__``'s cost.

    For code that has already checked its values (the builders, the outboxes' decoders).
    """
    op: Operation = _new_object(Operation)
    _set_op_id(op, op_id)
    _set_kind(op, kind)
    _set_identifiers(op, identifiers)
    _set_payload(op, payload)
    _set_created_at(op, created_at)
    _set_env(op, env)
    return op


class OperationMaker:
    """The base of ``builders.OperationFactory`` and of the builder mixins beside it
    (``objects``, ``segments_metrics``, ``sends``): ``_op`` gives each checked payload its
    op id (new, or the caller's once checked), its time and the factory's environment."""

    __slots__ = ()
    env: str

    def _op(
        self,
        kind: Kind,
        ids: Identifiers,
        payload: dict[str, Any],
        op_id: str | None,
        created_at: float | None,
    ) -> Operation:
        return new_operation(
            new_op_id() if op_id is None else checked_op_id(op_id),
            kind,
            ids,
            payload,
            time.time() if created_at is None else created_at,
            self.env,
        )
