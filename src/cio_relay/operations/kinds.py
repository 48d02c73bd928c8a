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


def _api(kind: Kind) -> Api:
    if kind in TRANSACTIONAL_KINDS:
        return Api.TRANSACTIONAL
    if kind is Kind.TRIGGER_BROADCAST:
        return Api.BROADCAST
    return Api.TRACK


#: The API family that carries each kind (a dict: ``Operation.api`` is read per operation sent).
API_OF: dict[Kind, Api] = {kind: _api(kind) for kind in Kind}
