"""The core data model: an ``Operation`` and how each kind becomes a request.

An Operation is one thing to tell Customer.io: identify a person, track an event, send a
transactional email ... It is built by the functions below, which check the documented limits
(customerio-api.md §4, §5; design.md contract 5) so that a violation is refused at enqueue with a
``LimitExceeded`` naming the field, the limit and the size, and nothing is half-written.

Everything else passes Operations around: the outbox stores them (``to_record``/``from_record``),
the dispatcher turns them into requests (``v1_request``, ``v2_item``).

Pure: no I/O, no clocks except ``created_at`` defaults, no globals.
"""

from __future__ import annotations

import email.utils
import math
import os
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import quote

import orjson

from cio_relay import json_values, kept_json
from cio_relay.digits import DEFAULT_MAX_DIGITS, whole_number
from cio_relay.errors import LimitExceeded, ValidationError

__all__ = [
    "LIMITS",
    "Api",
    "Kind",
    "Operation",
    "Request",
    "add_device",
    "delete",
    "delete_device",
    "identify",
    "merge",
    "new_op_id",
    "new_operation",
    "page",
    "screen",
    "send_email",
    "send_push",
    "send_sms",
    "suppress",
    "track",
    "track_anonymous",
    "trigger_broadcast",
    "unsuppress",
]


class Limits:
    """Documented Customer.io limits (customerio-api.md §4, §5). "< 32 KB" is taken as 32,000 bytes
    and "< 500 KB" as 500,000: the conservative reading of the docs."""

    identifier_bytes = 150
    attribute_name_bytes = 150
    attribute_value_bytes = 1000
    attributes_per_call = 300
    relationships_bytes = 100_000
    event_name_bytes = 100
    event_data_bytes = 100_000
    v2_item_bytes = 32_000
    v2_batch_bytes = 500_000
    recipients = 15
    attachments_bytes = 2_000_000


LIMITS = Limits()


class Kind(StrEnum):
    IDENTIFY = "identify"
    DELETE = "delete"
    TRACK = "track"
    TRACK_ANONYMOUS = "track_anonymous"
    PAGE = "page"
    SCREEN = "screen"
    ADD_DEVICE = "add_device"
    DELETE_DEVICE = "delete_device"
    SUPPRESS = "suppress"
    UNSUPPRESS = "unsuppress"
    MERGE = "merge"
    SEND_EMAIL = "send_email"
    SEND_PUSH = "send_push"
    SEND_SMS = "send_sms"
    TRIGGER_BROADCAST = "trigger_broadcast"


class Api(StrEnum):
    """The API families, each with its own rate limit (contract 6)."""

    TRACK = "track"
    TRANSACTIONAL = "transactional"
    BROADCAST = "broadcast"


TRANSACTIONAL_KINDS = frozenset({Kind.SEND_EMAIL, Kind.SEND_PUSH, Kind.SEND_SMS})
#: Kinds Customer.io does not de-duplicate: an ambiguous failure must not be retried blindly.
NON_IDEMPOTENT_KINDS = TRANSACTIONAL_KINDS | {Kind.TRIGGER_BROADCAST}
#: Kinds that can travel in ``/api/v2/batch``. Anonymous events stay on v1 because the v2 shape
#: of an anonymous event is not documented (customerio-api.md §3).
V2_KINDS = frozenset(
    {
        Kind.IDENTIFY,
        Kind.DELETE,
        Kind.TRACK,
        Kind.PAGE,
        Kind.SCREEN,
        Kind.ADD_DEVICE,
        Kind.DELETE_DEVICE,
        Kind.SUPPRESS,
        Kind.UNSUPPRESS,
        Kind.MERGE,
    }
)
IDENTIFIER_TYPES = ("id", "email", "cio_id")
#: v2 person events carry their properties under this key. Which of ``attributes`` (the spec's
#: style) and ``data`` (a Ruby README) is canonical is UNCONFIRMED; we follow the spec.
V2_EVENT_DATA_KEY = "attributes"

Identifiers = dict[str, str]
PersonRef = str | Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request to Customer.io, before any I/O."""

    api: Api
    method: Literal["GET", "PUT", "POST", "DELETE"]
    path: str
    body: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Operation:
    """One durable unit of work: what to tell Customer.io, and about whom.

    ``identifiers`` holds exactly one of ``id``/``email``/``cio_id`` for person operations; it is
    empty for anonymous events and broadcast triggers. ``person_key`` orders delivery (contract 3).
    """

    op_id: str
    kind: Kind
    identifiers: Identifiers
    payload: dict[str, Any]
    created_at: float = field(default_factory=time.time)
    env: str = "development"

    @property
    def api(self) -> Api:
        if self.kind in TRANSACTIONAL_KINDS:
            return Api.TRANSACTIONAL
        if self.kind is Kind.TRIGGER_BROADCAST:
            return Api.BROADCAST
        return Api.TRACK

    @property
    def idempotent(self) -> bool:
        return self.kind not in NON_IDEMPOTENT_KINDS

    @property
    def person_key(self) -> str:
        """The ordering key: operations with the same key are delivered in enqueue order."""
        if self.identifiers:
            ((id_type, value),) = self.identifiers.items()
            return f"{id_type}:{value}"
        if self.kind is Kind.TRACK_ANONYMOUS:
            return f"anonymous_id:{self.payload.get('anonymous_id', '')}"
        if self.kind is Kind.TRIGGER_BROADCAST:
            return f"broadcast:{self.payload['broadcast_id']}"
        return f"op:{self.op_id}"

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
        # What the outbox stored was validated when it was built: no builder runs again here.
        found = _KINDS.get(kind) or Kind(kind)  # Kind() only to raise for an unknown kind
        if cls is Operation:
            return new_operation(op_id, found, body["i"], body["p"], created_at, env)
        return cls(op_id, found, body["i"], body["p"], created_at, env)

    def v1_request(self) -> Request:
        return _V1_BUILDERS[self.kind](self)

    def v2_item(self) -> dict[str, Any] | None:
        """The ``/api/v2/batch`` item for this operation, or None where v2 does not apply."""
        build = _V2_BUILDERS.get(self.kind)
        return None if build is None else build(self)

    def __repr__(self) -> str:
        # Payloads can hold personal data; a repr names the operation, not its contents.
        return (
            f"Operation(op_id={self.op_id!r}, kind={self.kind.value!r}, person={self.person_key!r})"
        )


_KINDS: dict[str, Kind] = {kind.value: kind for kind in Kind}
#: ``kind.value`` is a Python-level enum property; a dict lookup is five times as fast.
_KIND_VALUES: dict[Kind, str] = {kind: kind.value for kind in Kind}


# Setting the slots directly is about twice as fast as the frozen dataclass's ``__init__``
# (which goes through ``object.__setattr__`` per field): it counts on the hot paths, where every
# operation is built once when enqueued and once more when leased.
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


# --- building -----------------------------------------------------------------------------------

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # 10 bits -> two base32 digits
# Seeded from the system's random source, and again in a forked child (uvicorn workers).
_random = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _random.seed(os.urandom(32)))
_random_bits = _random.getrandbits
_clock_ns = time.time_ns
# The current millisecond and its 10 base32 digits: encoded once per millisecond, not per id.
# One tuple, replaced whole, so that threads never see the digits of another millisecond.
_time_prefix: tuple[int, str] = (-1, "")


def _encode_time(ms: int) -> str:
    """48 bits of milliseconds as the first 10 digits of a ULID (the first carries 3 bits)."""
    p = _PAIRS
    return (
        p[ms >> 40 & 1023] + p[ms >> 30 & 1023] + p[ms >> 20 & 1023] + p[ms >> 10 & 1023]
        + p[ms & 1023]
    )  # fmt: skip


def new_op_id() -> str:
    """A new op id: a ULID (48 bits of milliseconds, 80 random bits, Crockford base32).

    About eight times as fast as python-ulid's ``str(ULID())``, which matters when every
    operation gets one: the random bits come from a generator seeded from the system's random
    source instead of a system call per id (on the ingestion hot path each system call also
    hands the GIL to the thread writing the outbox, which then keeps it for a while), and the
    time digits are encoded once per millisecond. Op ids must be unique, not secret: 80 random
    bits per millisecond are.
    """
    global _time_prefix
    ms = _clock_ns() // 1_000_000
    cached_ms, digits = _time_prefix
    if ms != cached_ms:
        digits = _encode_time(ms)
        _time_prefix = (ms, digits)
    # Four draws of 20 bits: small ints, where one of 80 bits is a multi-digit int whose every
    # shift and mask allocates (measured ~25 % faster in all).
    a, b, c, d = _random_bits(20), _random_bits(20), _random_bits(20), _random_bits(20)
    p = _PAIRS
    return (
        f"{digits}{p[a >> 10]}{p[a & 1023]}{p[b >> 10]}{p[b & 1023]}"
        f"{p[c >> 10]}{p[c & 1023]}{p[d >> 10]}{p[d & 1023]}"
    )


def _utf8_size(value: str) -> int:
    # A str of n code points is at most 4n UTF-8 bytes: skip the encode when it cannot matter.
    return len(value) if value.isascii() else len(value.encode())


_dumps = json_values.dumps


def _json_size(value: Any, field_name: str, key: str | None = None) -> int:
    """The size of ``value`` as JSON; ``ValidationError`` for what JSON cannot carry as given
    (``json_values.dumps``), under ``field_name`` (and ``key``)."""
    if isinstance(value, str):
        return _utf8_size(value)
    return len(_dumps(value, field_name, key))


def _check_bytes(field_name: str, value: str, limit: int) -> None:
    size = _utf8_size(value)
    if size > limit:
        raise LimitExceeded(field_name, limit, size)


#: A v1 request names a person (and a device) by a path segment, and "." or ".." there would
#: name another resource: URL normalisation removes them, also when written as %2E (RFC 3986
#: sections 2.3 and 5.2.4), so no encoding carries them. The official SDKs encode segments
#: (``quote(id, safe="")``, ``encodeURIComponent``), which leaves dots as they are.
_DOT_SEGMENTS = frozenset({".", ".."})
_NOT_AN_ID = "must be a non-empty string other than '.' and '..' (which cannot travel in a URL)"


def _identifiers(person: PersonRef, field_name: str = "identifier") -> Identifiers:
    if isinstance(person, str):
        id_type, value = "id", person
    else:
        ids = {k: v for k, v in person.items() if v not in (None, "")}
        if len(ids) != 1 or next(iter(ids)) not in IDENTIFIER_TYPES:
            raise ValidationError(
                field_name, f"give exactly one of {', '.join(IDENTIFIER_TYPES)}; got {sorted(ids)}"
            )
        ((id_type, value),) = ids.items()
    if not isinstance(value, str) or not value.strip() or value in _DOT_SEGMENTS:
        raise ValidationError(f"{field_name}.{id_type}", _NOT_AN_ID)
    size = _utf8_size(value)  # the field's name is only formatted for an error (hot path)
    if size > LIMITS.identifier_bytes:
        raise LimitExceeded(f"{field_name}.{id_type}", LIMITS.identifier_bytes, size)
    return {id_type: value}


def _check_attributes(attributes: Mapping[str, Any], field_name: str = "attributes") -> None:
    if len(attributes) > LIMITS.attributes_per_call:
        raise LimitExceeded(field_name, LIMITS.attributes_per_call, len(attributes), "attributes")
    for name, value in attributes.items():
        if not isinstance(name, str) or not name:
            raise ValidationError(
                field_name, f"attribute names must be non-empty strings: {name!r}"
            )
        _check_bytes(f"{field_name} name {name[:40]!r}", name, LIMITS.attribute_name_bytes)
        limit = (
            LIMITS.relationships_bytes
            if name == "cio_relationships"
            else LIMITS.attribute_value_bytes
        )
        size = _json_size(value, field_name, name)
        if size > limit:
            raise LimitExceeded(f"{field_name}.{name}", limit, size)


def _check_event(name: str, data: dict[str, Any]) -> str:
    """Check an event's name and (already copied, see ``_stamp``) data; return the name as
    sent: stripped of surrounding white space."""
    if not isinstance(name, str) or not (stripped := name.strip()):
        raise ValidationError("name", "an event name is required")
    _check_bytes("name", stripped, LIMITS.event_name_bytes)
    size = len(_dumps(data, "data"))  # data is a dict: no _json_size step (hot path)
    if size > LIMITS.event_data_bytes:
        raise LimitExceeded("data", LIMITS.event_data_bytes, size)
    return stripped


#: JSON integers past 2**53 lose precision in most readers; no Unix time needs them.
_MAX_UNIX_SECONDS = 2**53


def _unix_seconds(value: Any, field_name: str) -> int:
    """A Unix time given as a number, in whole seconds (text is refused, not parsed)."""
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= _MAX_UNIX_SECONDS
    ):
        return int(value)
    raise ValidationError(
        field_name, f"must be Unix seconds, a number from 0 to 2**53; got {value!r:.40}"
    )


def _finish(op: Operation) -> Operation:
    """Last step shared by every builder.

    The v2 limit of 32 KB per item is not an error here: an operation whose v2 item is larger
    travels alone on the v1 API, whose (per-attribute, per-event) limits it has already met.
    """
    return op


_ULID = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")


def checked_op_id(op_id: str) -> str:
    """A caller's own op id, upper-cased: it must be a ULID, because a Track event carries it
    as its ``id`` and Customer.io refuses any other (better here than in the worker)."""
    if not isinstance(op_id, str) or _ULID.fullmatch(op_id.upper()) is None:
        size = len(op_id) if isinstance(op_id, str) else type(op_id).__name__
        raise ValidationError(
            "op_id", f"must be a ULID (26 Crockford base32 characters); got {size!r}"
        )
    return op_id.upper()


def _op(
    kind: Kind,
    identifiers: Identifiers,
    payload: dict[str, Any],
    env: str,
    op_id: str | None,
    created_at: float | None,
) -> Operation:
    return _finish(
        new_operation(
            new_op_id() if op_id is None else checked_op_id(op_id),
            kind,
            identifiers,
            payload,
            time.time() if created_at is None else created_at,
            env,
        )
    )


def _stamp(values: Mapping[str, Any], env: str, stamp_env: bool, field_name: str) -> dict[str, Any]:
    """A copy of ``values`` (the caller's dict is never kept), stamped with ``_env`` if asked."""
    if type(values) is not dict and not isinstance(values, Mapping):
        raise ValidationError(field_name, f"must be an object, not {type(values).__name__}")
    out = dict(values)
    if stamp_env:
        out.setdefault("_env", env)
    return out


def identify(
    person: PersonRef,
    attributes: Mapping[str, Any] | None = None,
    *,
    env: str = "development",
    stamp_env: bool = False,
    op_id: str | None = None,
    created_at: float | None = None,
) -> Operation:
    """Create or update a person with ``attributes``."""
    ids = _identifiers(person)
    attrs = _stamp(attributes or {}, env, stamp_env, "attributes")
    _check_attributes(attrs)
    return _op(Kind.IDENTIFY, ids, {"attributes": attrs}, env, op_id, created_at)


def _event(
    kind: Kind,
    person: PersonRef,
    name: str,
    data: Mapping[str, Any] | None,
    *,
    env: str,
    stamp_env: bool,
    timestamp: float | None,
    op_id: str | None,
    created_at: float | None,
) -> Operation:
    ids = _identifiers(person)
    clean = _stamp(data or {}, env, stamp_env, "data")
    stripped = _check_event(name, clean)
    created = time.time() if created_at is None else created_at
    payload = {
        "name": stripped,
        "data": clean,
        "timestamp": int(created) if timestamp is None else _unix_seconds(timestamp, "timestamp"),
    }
    return _op(kind, ids, payload, env, op_id, created)


def track(
    person: PersonRef,
    name: str,
    data: Mapping[str, Any] | None = None,
    *,
    env: str = "development",
    stamp_env: bool = False,
    timestamp: float | None = None,
    op_id: str | None = None,
    created_at: float | None = None,
) -> Operation:
    """An event for a person. ``op_id`` travels as the event ``id`` so a redelivery is ignored."""
    return _event(
        Kind.TRACK,
        person,
        name,
        data,
        env=env,
        stamp_env=stamp_env,
        timestamp=timestamp,
        op_id=op_id,
        created_at=created_at,
    )


def page(
    person: PersonRef,
    url: str,
    data: Mapping[str, Any] | None = None,
    *,
    env: str = "development",
    stamp_env: bool = False,
    timestamp: float | None = None,
    op_id: str | None = None,
    created_at: float | None = None,
) -> Operation:
    """A page view: an event of type ``page`` named by the URL."""
    return _event(
        Kind.PAGE,
        person,
        url,
        data,
        env=env,
        stamp_env=stamp_env,
        timestamp=timestamp,
        op_id=op_id,
        created_at=created_at,
    )


def screen(
    person: PersonRef,
    name: str,
    data: Mapping[str, Any] | None = None,
    *,
    env: str = "development",
    stamp_env: bool = False,
    timestamp: float | None = None,
    op_id: str | None = None,
    created_at: float | None = None,
) -> Operation:
    """A mobile screen view: an event of type ``screen``."""
    return _event(
        Kind.SCREEN,
        person,
        name,
        data,
        env=env,
        stamp_env=stamp_env,
        timestamp=timestamp,
        op_id=op_id,
        created_at=created_at,
    )


def track_anonymous(
    anonymous_id: str,
    name: str,
    data: Mapping[str, Any] | None = None,
    *,
    env: str = "development",
    stamp_env: bool = False,
    timestamp: float | None = None,
    op_id: str | None = None,
    created_at: float | None = None,
) -> Operation:
    """An event for someone not yet identified; merged later by ``anonymous_id``."""
    if not isinstance(anonymous_id, str) or not anonymous_id.strip():
        raise ValidationError("anonymous_id", "must be a non-empty string")
    _check_bytes("anonymous_id", anonymous_id, LIMITS.identifier_bytes)
    clean = _stamp(data or {}, env, stamp_env, "data")
    stripped = _check_event(name, clean)
    created = time.time() if created_at is None else created_at
    payload = {
        "anonymous_id": anonymous_id,
        "name": stripped,
        "data": clean,
        "timestamp": int(created) if timestamp is None else _unix_seconds(timestamp, "timestamp"),
    }
    return _op(Kind.TRACK_ANONYMOUS, {}, payload, env, op_id, created)


def _simple(
    kind: Kind, person: PersonRef, env: str, op_id: str | None, created_at: float | None
) -> Operation:
    return _op(kind, _identifiers(person), {}, env, op_id, created_at)


def delete(
    person: PersonRef,
    *,
    env: str = "development",
    op_id: str | None = None,
    created_at: float | None = None,
) -> Operation:
    """Delete a person (irreversible at Customer.io)."""
    return _simple(Kind.DELETE, person, env, op_id, created_at)


def suppress(
    person: PersonRef,
    *,
    env: str = "development",
    op_id: str | None = None,
    created_at: float | None = None,
) -> Operation:
    """Delete a person and stop them being added again."""
    return _simple(Kind.SUPPRESS, person, env, op_id, created_at)


def unsuppress(
    person: PersonRef,
    *,
    env: str = "development",
    op_id: str | None = None,
    created_at: float | None = None,
) -> Operation:
    return _simple(Kind.UNSUPPRESS, person, env, op_id, created_at)


PLATFORMS = ("ios", "android")


def _check_token(token: str) -> None:
    if not isinstance(token, str) or not token:
        raise ValidationError("token", "a device token is required")
    if token in _DOT_SEGMENTS:  # a path segment of DELETE .../devices/{token}
        raise ValidationError("token", _NOT_AN_ID)


def add_device(
    person: PersonRef,
    token: str,
    platform: str,
    *,
    last_used: int | None = None,
    attributes: Mapping[str, Any] | None = None,
    env: str = "development",
    op_id: str | None = None,
    created_at: float | None = None,
) -> Operation:
    """Add or update a push device for a person."""
    ids = _identifiers(person)
    _check_token(token)
    if platform not in PLATFORMS:
        raise ValidationError(
            "platform", f"must be one of {', '.join(PLATFORMS)}, not {platform!r}"
        )
    attrs = dict(attributes or {})
    _check_attributes(attrs, "device.attributes")
    payload: dict[str, Any] = {"token": token, "platform": platform, "attributes": attrs}
    if last_used is not None:
        payload["last_used"] = _unix_seconds(last_used, "last_used")
    return _op(Kind.ADD_DEVICE, ids, payload, env, op_id, created_at)


def delete_device(
    person: PersonRef,
    token: str,
    *,
    env: str = "development",
    op_id: str | None = None,
    created_at: float | None = None,
) -> Operation:
    ids = _identifiers(person)
    _check_token(token)
    return _op(Kind.DELETE_DEVICE, ids, {"token": token}, env, op_id, created_at)


def merge(
    primary: PersonRef,
    secondary: PersonRef,
    *,
    env: str = "development",
    op_id: str | None = None,
    created_at: float | None = None,
) -> Operation:
    """Merge ``secondary`` into ``primary``; the secondary is deleted (irreversible)."""
    first = _identifiers(primary, "primary")
    second = _identifiers(secondary, "secondary")
    if first == second:
        raise ValidationError("secondary", "cannot merge a person into themselves")
    return _op(Kind.MERGE, first, {"primary": first, "secondary": second}, env, op_id, created_at)


# --- App API: transactional and broadcasts ------------------------------------------------------


def _recipients(value: Any) -> int:
    if value in (None, ""):
        return 0
    if isinstance(value, str):
        return len([part for part in value.split(",") if part.strip()])
    if isinstance(value, list):
        return len(value)
    raise ValidationError("to", "must be a string or a list of strings")


def _transactional_identifiers(identifiers: Mapping[str, str] | None, to: Any) -> Identifiers:
    """The person a send is about: ``identifiers``, or for one plain recipient address that
    address as ``{"email": ...}``. Customer.io refuses a send without one (customerio-api.md
    §5), so it is refused here, before anything is stored."""
    if identifiers:
        return _identifiers(identifiers, "identifiers")
    if isinstance(to, str) and "," not in to:
        _name, address = email.utils.parseaddr(to)
        if "@" in address:
            return {"email": address}
    raise ValidationError(
        "identifiers",
        "required: give {'id': ...}, {'email': ...} or {'cio_id': ...} for the person this "
        "message is about (it may be left out only when 'to' is one email address)",
    )


def _check_transactional(fields: dict[str, Any]) -> None:
    if fields.get("transactional_message_id") in (None, "") and not all(
        fields.get(name) for name in ("body", "subject", "from")
    ):
        raise ValidationError(
            "transactional_message_id",
            "give a transactional_message_id, or body, subject and from for a message without one",
        )
    data = fields.get("message_data")
    if data is not None and not isinstance(data, Mapping):
        raise ValidationError("message_data", f"must be an object, not {type(data).__name__}")


#: An email header's name is an RFC 9110 token; a CR or LF in a name or value would start a
#: header of the caller's choosing in the message Customer.io sends (header injection).
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE_FORBIDDEN = re.compile(r"[\r\n\x00]")


def _check_headers(headers: Any) -> None:
    if not isinstance(headers, Mapping):
        raise ValidationError("headers", "must be an object of header name -> value")
    for name, value in headers.items():
        if not isinstance(name, str) or _HEADER_NAME.fullmatch(name) is None:
            raise ValidationError(
                "headers", f"header name {name!r:.60} is not a token (RFC 9110 section 5.6.2)"
            )
        if not isinstance(value, str):
            raise ValidationError(f"headers.{name}", f"must be text, not {type(value).__name__}")
        if _HEADER_VALUE_FORBIDDEN.search(value) is not None:
            raise ValidationError(f"headers.{name}", "must not contain CR, LF or NUL")


def send_email(
    *,
    to: str | list[str],
    identifiers: Mapping[str, str] | None = None,
    transactional_message_id: str | int | None = None,
    message_data: Mapping[str, Any] | None = None,
    env: str = "development",
    op_id: str | None = None,
    created_at: float | None = None,
    **fields: Any,
) -> Operation:
    """A transactional email. Extra ``fields`` (``subject``, ``cc``, ``attachments``, ``send_at``
    ...) pass through as documented in customerio-api.md §5."""
    if not to:
        raise ValidationError("to", "a recipient is required")
    total = sum(_recipients(v) for v in (to, fields.get("cc"), fields.get("bcc")))
    if total > LIMITS.recipients:
        raise LimitExceeded("to", LIMITS.recipients, total, "recipients")
    attachments = fields.get("attachments") or {}
    if not isinstance(attachments, Mapping):
        raise ValidationError("attachments", "must be an object of filename -> base64 content")
    for filename in attachments:
        if "." not in str(filename):
            raise ValidationError("attachments", f"filename {filename!r} needs an extension")
    headers = fields.get("headers")
    if headers is not None:
        _check_headers(headers)
    attached = sum(_utf8_size(str(content)) for content in attachments.values())
    if attached > LIMITS.attachments_bytes:
        raise LimitExceeded("attachments", LIMITS.attachments_bytes, attached)
    payload: dict[str, Any] = {"to": to, **fields}
    return _app_op(
        Kind.SEND_EMAIL,
        payload,
        identifiers,
        to,
        transactional_message_id,
        message_data,
        env,
        op_id,
        created_at,
    )


def _app_op(
    kind: Kind,
    payload: dict[str, Any],
    identifiers: Mapping[str, str] | None,
    to: Any,
    transactional_message_id: str | int | None,
    message_data: Mapping[str, Any] | None,
    env: str,
    op_id: str | None,
    created_at: float | None,
) -> Operation:
    ids = _transactional_identifiers(identifiers, to)
    if ids:
        payload["identifiers"] = ids
    if transactional_message_id not in (None, ""):
        payload["transactional_message_id"] = transactional_message_id
    if message_data is not None:
        payload["message_data"] = message_data
    _check_transactional(payload)
    _json_size(payload, "")  # refuse what cannot be serialised now, not in the worker
    return _op(kind, ids, payload, env, op_id, created_at)


def send_push(
    *,
    identifiers: Mapping[str, str],
    transactional_message_id: str | int,
    message_data: Mapping[str, Any] | None = None,
    env: str = "development",
    op_id: str | None = None,
    created_at: float | None = None,
    **fields: Any,
) -> Operation:
    """A transactional push; ``fields`` such as ``title``, ``message``, ``to`` pass through."""
    if not identifiers:
        raise ValidationError("identifiers", "a push needs the person's identifiers")
    return _app_op(
        Kind.SEND_PUSH,
        dict(fields),
        identifiers,
        None,
        transactional_message_id,
        message_data,
        env,
        op_id,
        created_at,
    )


def send_sms(
    *,
    identifiers: Mapping[str, str],
    transactional_message_id: str | int,
    message_data: Mapping[str, Any] | None = None,
    env: str = "development",
    op_id: str | None = None,
    created_at: float | None = None,
    **fields: Any,
) -> Operation:
    """A transactional SMS; ``fields`` such as ``to`` pass through."""
    if not identifiers:
        raise ValidationError("identifiers", "an SMS needs the person's identifiers")
    return _app_op(
        Kind.SEND_SMS,
        dict(fields),
        identifiers,
        None,
        transactional_message_id,
        message_data,
        env,
        op_id,
        created_at,
    )


BROADCAST_AUDIENCES = ("recipients", "emails", "ids", "per_user_data", "data_file_url")


def _broadcast_number(broadcast_id: int | str) -> int:
    """A broadcast id as Customer.io's path takes it: a whole number, given as an int or as
    ASCII digits (``digits.whole_number``: "²" and "١٢" are not numbers here)."""
    number: int | None = None
    if isinstance(broadcast_id, str):
        number = whole_number(broadcast_id)
    elif isinstance(broadcast_id, int) and not isinstance(broadcast_id, bool):
        # Checked by value: str() of an int past 4,300 digits raises.
        number = broadcast_id if 0 <= broadcast_id < _MAX_BROADCAST_ID else None
    if number is None:
        raise ValidationError(
            "broadcast_id",
            f"must be a whole number of 1 to {DEFAULT_MAX_DIGITS} ASCII digits; "
            f"got {_described(broadcast_id)}",
        )
    return number


def _described(value: Any) -> str:
    """A refused value in an error: text cut short, with its length; an int by its sign."""
    if isinstance(value, str):
        return f"{value!r:.40} ({len(value)} characters)"
    if isinstance(value, int) and not isinstance(value, bool):
        return "a negative number" if value < 0 else "a number of more digits"
    return type(value).__name__


_MAX_BROADCAST_ID = 10**DEFAULT_MAX_DIGITS


def trigger_broadcast(
    broadcast_id: int | str,
    *,
    data: Mapping[str, Any] | None = None,
    env: str = "development",
    op_id: str | None = None,
    created_at: float | None = None,
    **audience: Any,
) -> Operation:
    """Trigger an API-triggered broadcast with at most one audience (customerio-api.md §5)."""
    number = _broadcast_number(broadcast_id)
    chosen = [name for name in BROADCAST_AUDIENCES if audience.get(name) is not None]
    if len(chosen) > 1:
        raise ValidationError("audience", f"give at most one audience; got {', '.join(chosen)}")
    if audience.get("recipients") == {}:
        raise ValidationError("recipients", "empty recipients filter is not valid")
    payload: dict[str, Any] = {"broadcast_id": number, **audience}
    if data is not None:
        if not isinstance(data, Mapping):
            raise ValidationError("data", f"must be an object, not {type(data).__name__}")
        payload["data"] = dict(data)
    _json_size(payload, "")
    return _op(Kind.TRIGGER_BROADCAST, {}, payload, env, op_id, created_at)


# --- requests -----------------------------------------------------------------------------------


def path_identifier(identifiers: Identifiers) -> str:
    """The ``{identifier}`` path segment: an id, an email, or ``cio_<cio_id>``; URL-quoted."""
    ((id_type, value),) = identifiers.items()
    return quote(f"cio_{value}" if id_type == "cio_id" else value, safe="")


def _customer_path(op: Operation, suffix: str = "") -> str:
    return f"/api/v1/customers/{path_identifier(op.identifiers)}{suffix}"


def _v1_event_body(op: Operation, event_type: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": op.payload["name"],
        "data": op.payload["data"],
        "id": op.op_id,
        "timestamp": op.payload["timestamp"],
    }
    if event_type:
        body["type"] = event_type
    return body


def _device_body(op: Operation) -> dict[str, Any]:
    device: dict[str, Any] = {"id": op.payload["token"], "platform": op.payload["platform"]}
    if "last_used" in op.payload:
        device["last_used"] = op.payload["last_used"]
    if op.payload.get("attributes"):
        device["attributes"] = op.payload["attributes"]
    return {"device": device}


_V1_BUILDERS: dict[Kind, Callable[[Operation], Request]] = {
    Kind.IDENTIFY: lambda op: Request(
        Api.TRACK, "PUT", _customer_path(op), op.payload["attributes"]
    ),
    Kind.DELETE: lambda op: Request(Api.TRACK, "DELETE", _customer_path(op)),
    Kind.TRACK: lambda op: Request(
        Api.TRACK, "POST", _customer_path(op, "/events"), _v1_event_body(op, None)
    ),
    Kind.PAGE: lambda op: Request(
        Api.TRACK, "POST", _customer_path(op, "/events"), _v1_event_body(op, "page")
    ),
    Kind.SCREEN: lambda op: Request(
        Api.TRACK, "POST", _customer_path(op, "/events"), _v1_event_body(op, "screen")
    ),
    Kind.TRACK_ANONYMOUS: lambda op: Request(
        Api.TRACK,
        "POST",
        "/api/v1/events",
        {**_v1_event_body(op, None), "anonymous_id": op.payload["anonymous_id"]},
    ),
    Kind.ADD_DEVICE: lambda op: Request(
        Api.TRACK, "PUT", _customer_path(op, "/devices"), _device_body(op)
    ),
    Kind.DELETE_DEVICE: lambda op: Request(
        Api.TRACK,
        "DELETE",
        _customer_path(op, f"/devices/{quote(op.payload['token'], safe='')}"),
    ),
    Kind.SUPPRESS: lambda op: Request(Api.TRACK, "POST", _customer_path(op, "/suppress")),
    Kind.UNSUPPRESS: lambda op: Request(Api.TRACK, "POST", _customer_path(op, "/unsuppress")),
    Kind.MERGE: lambda op: Request(
        Api.TRACK,
        "POST",
        "/api/v1/merge_customers",
        {"primary": op.payload["primary"], "secondary": op.payload["secondary"]},
    ),
    Kind.SEND_EMAIL: lambda op: Request(Api.TRANSACTIONAL, "POST", "/v1/send/email", op.payload),
    Kind.SEND_PUSH: lambda op: Request(Api.TRANSACTIONAL, "POST", "/v1/send/push", op.payload),
    Kind.SEND_SMS: lambda op: Request(Api.TRANSACTIONAL, "POST", "/v1/send/sms", op.payload),
    Kind.TRIGGER_BROADCAST: lambda op: Request(
        Api.BROADCAST,
        "POST",
        f"/v1/campaigns/{op.payload['broadcast_id']}/triggers",
        {k: v for k, v in op.payload.items() if k != "broadcast_id"},
    ),
}


# One builder per kind (keys in the order the items have always had): the dispatcher builds an
# item for every Track operation it sends, so no chain of kind tests runs per item.


def _v2_event(action: str) -> Callable[[Operation], dict[str, Any]]:
    def build(op: Operation) -> dict[str, Any]:
        payload = op.payload
        item: dict[str, Any] = {
            "type": "person",
            "action": action,
            "identifiers": op.identifiers,
            "name": payload["name"],
            "id": op.op_id,
            "timestamp": payload["timestamp"],
        }
        if payload["data"]:
            item[V2_EVENT_DATA_KEY] = payload["data"]
        return item

    return build


def _v2_person(action: str) -> Callable[[Operation], dict[str, Any]]:
    def build(op: Operation) -> dict[str, Any]:
        return {"type": "person", "action": action, "identifiers": op.identifiers}

    return build


def _v2_add_device(op: Operation) -> dict[str, Any]:
    payload = op.payload
    device: dict[str, Any] = {"token": payload["token"], "platform": payload["platform"]}
    if "last_used" in payload:
        device["last_used"] = payload["last_used"]
    if payload.get("attributes"):
        device["attributes"] = payload["attributes"]
    return {
        "type": "person",
        "action": Kind.ADD_DEVICE.value,
        "identifiers": op.identifiers,
        "device": device,
    }


_V2_BUILDERS: dict[Kind, Callable[[Operation], dict[str, Any]]] = {
    Kind.IDENTIFY: lambda op: {
        "type": "person",
        "action": Kind.IDENTIFY.value,
        "identifiers": op.identifiers,
        "attributes": op.payload["attributes"],
    },
    Kind.DELETE: _v2_person(Kind.DELETE.value),
    Kind.TRACK: _v2_event("event"),
    Kind.PAGE: _v2_event(Kind.PAGE.value),
    Kind.SCREEN: _v2_event(Kind.SCREEN.value),
    Kind.ADD_DEVICE: _v2_add_device,
    Kind.DELETE_DEVICE: lambda op: {
        "type": "person",
        "action": Kind.DELETE_DEVICE.value,
        "identifiers": op.identifiers,
        "device": {"token": op.payload["token"]},
    },
    Kind.SUPPRESS: _v2_person(Kind.SUPPRESS.value),
    Kind.UNSUPPRESS: _v2_person(Kind.UNSUPPRESS.value),
    Kind.MERGE: lambda op: {
        "type": "person",
        "action": Kind.MERGE.value,
        "primary": op.payload["primary"],
        "secondary": op.payload["secondary"],
    },
}
assert frozenset(_V2_BUILDERS) == V2_KINDS
