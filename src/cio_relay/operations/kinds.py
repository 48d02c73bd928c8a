"""What can be told to Customer.io: the kinds of operation and the API family each goes to.

Each family has its own rate limit (design.md contract 6), and the families differ in whether
Customer.io de-duplicates a redelivery (contract 2): that decides whether an ambiguous failure
may be retried.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "API_OF",
    "NON_IDEMPOTENT_KINDS",
    "OBJECT_KINDS",
    "TRANSACTIONAL_KINDS",
    "V2_KINDS",
    "Api",
    "Kind",
]


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
    ADD_RELATIONSHIPS = "add_relationships"
    DELETE_RELATIONSHIPS = "delete_relationships"
    IDENTIFY_OBJECT = "identify_object"
    DELETE_OBJECT = "delete_object"
    IDENTIFY_ANONYMOUS = "identify_anonymous"
    ADD_OBJECT_RELATIONSHIPS = "add_object_relationships"
    DELETE_OBJECT_RELATIONSHIPS = "delete_object_relationships"
    ADD_TO_SEGMENT = "add_to_segment"
    REMOVE_FROM_SEGMENT = "remove_from_segment"
    TRACK_METRIC = "track_metric"
    TRACK_PUSH_METRIC = "track_push_metric"
    SEND_EMAIL = "send_email"
    SEND_PUSH = "send_push"
    SEND_SMS = "send_sms"
    SEND_WHATSAPP = "send_whatsapp"
    SEND_IN_APP = "send_in_app"
    SEND_INBOX_MESSAGE = "send_inbox_message"
    TRIGGER_BROADCAST = "trigger_broadcast"


class Api(StrEnum):
    """The API families, each with its own rate limit (contract 6)."""

    TRACK = "track"
    TRANSACTIONAL = "transactional"
    BROADCAST = "broadcast"


TRANSACTIONAL_KINDS = frozenset(
    {
        Kind.SEND_EMAIL,
        Kind.SEND_PUSH,
        Kind.SEND_SMS,
        Kind.SEND_WHATSAPP,
        Kind.SEND_IN_APP,
        Kind.SEND_INBOX_MESSAGE,
    }
)
#: Kinds Customer.io does not de-duplicate: an ambiguous failure must not be retried blindly.
NON_IDEMPOTENT_KINDS = TRANSACTIONAL_KINDS | {Kind.TRIGGER_BROADCAST}
#: Kinds that can travel in ``/api/v2/batch``. Anonymous events stay on v1 because the v2 shape
#: of an anonymous event is not documented (customerio-api.md §3). Manual segment membership
#: has no v2 form. Delivery metrics stay on v1: v2's ``delivery`` item documents no
#: ``timestamp``, so a metric delivered late would be dated when it arrives, not when it
#: happened, and it only takes push's three metrics.
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
        Kind.ADD_RELATIONSHIPS,
        Kind.DELETE_RELATIONSHIPS,
        Kind.IDENTIFY_OBJECT,
        Kind.DELETE_OBJECT,
        Kind.IDENTIFY_ANONYMOUS,
        Kind.ADD_OBJECT_RELATIONSHIPS,
        Kind.DELETE_OBJECT_RELATIONSHIPS,
    }
)
#: Kinds about an object (track-api.json ``object_operations``), named in ``payload["object"]``.
OBJECT_KINDS = frozenset(
    {
        Kind.IDENTIFY_OBJECT,
        Kind.DELETE_OBJECT,
        Kind.IDENTIFY_ANONYMOUS,
        Kind.ADD_OBJECT_RELATIONSHIPS,
        Kind.DELETE_OBJECT_RELATIONSHIPS,
    }
)


def _api(kind: Kind) -> Api:
    if kind in TRANSACTIONAL_KINDS:
        return Api.TRANSACTIONAL
    if kind is Kind.TRIGGER_BROADCAST:
        return Api.BROADCAST
    return Api.TRACK


#: The API family that carries each kind (a dict: ``Operation.api`` is read per operation sent).
API_OF: dict[Kind, Api] = {kind: _api(kind) for kind in Kind}
