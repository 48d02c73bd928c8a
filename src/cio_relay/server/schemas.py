"""The ingestion API's request and response bodies, written once as pydantic models.

They serve twice: ``model_validate_json`` checks each request's shape (types, required fields,
no unknown fields) in a couple of microseconds, and ``server/openapi.py`` turns them into the
OpenAPI document's schemas. The documented Customer.io limits (bytes, counts) are not repeated
here: the operation builders check them and answer with the field, the limit and the size.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from cio_relay.operations import Metric, PushMetric, SegmentIdType

__all__ = [
    "MAX_BATCH_OPERATIONS",
    "OPTIONAL_BODIES",
    "Accepted",
    "AnonymousEventBody",
    "AnonymousObjectBody",
    "BatchBody",
    "BatchItem",
    "BroadcastBody",
    "CioObject",
    "EmailBody",
    "ErrorBody",
    "EventBody",
    "IdType",
    "Identifiers",
    "IdentifyBody",
    "MetricBody",
    "ObjectBody",
    "ObjectKey",
    "ObjectPeopleBody",
    "ObjectRef",
    "ObjectRelationship",
    "PersonRef",
    "PersonRelationship",
    "PersonRelationshipsBody",
    "PreferenceStampBody",
    "PreferencesBody",
    "PushEventBody",
    "SegmentPeopleBody",
    "SyncUserBody",
    "TemplateSendBody",
    "UserChange",
    "UserStateBody",
    "WhatsAppBody",
]

#: Operations one ``POST /v1/batch`` may carry (the body cap applies as well).
MAX_BATCH_OPERATIONS = 1000
#: JSON integers past 2**53 lose precision in most clients; timestamps never need them.
_MAX_TIMESTAMP = 2**53

IdType = Literal["id", "email", "phone", "cio_id"]
JsonObject = dict[str, Any]
Timestamp = Annotated[int, Field(ge=0, le=_MAX_TIMESTAMP, description="Unix seconds")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Identifiers(_Body):
    """Exactly one of ``id``, ``email``, ``phone`` (E.164), ``cio_id``."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"minProperties": 1, "maxProperties": 1}
    )
    id: str | None = None
    email: str | None = None
    phone: str | None = Field(None, description="E.164, like +14155552671")
    cio_id: str | None = None

    def as_person(self) -> dict[str, str]:
        given = (("id", self.id), ("email", self.email), ("phone", self.phone))
        return {k: v for k, v in (*given, ("cio_id", self.cio_id)) if v is not None}


PersonRef = Annotated[
    str | Identifiers,
    Field(description="A person's id, or an object with exactly one of id, email, phone, cio_id"),
]


class IdentifyBody(_Body):
    attributes: JsonObject = Field(
        default_factory=dict,
        description="Attributes to set (at most 300; names up to 150 bytes, values up to 1000)",
    )


class EventBody(_Body):
    name: str = Field(description="Event name (up to 100 bytes); for a page view, the URL")
    data: JsonObject | None = Field(None, description="Event data (up to 100,000 bytes)")
    timestamp: Timestamp | None = None
    type: Literal["event", "page", "screen"] = "event"


class AnonymousEventBody(_Body):
    anonymous_id: str | None = Field(
        None,
        description="Merged into a person later who has the same value; leave it out for an "
        "event about no one yet (an invite)",
    )
    name: str
    data: JsonObject | None = None
    timestamp: Timestamp | None = None
    type: Literal["event", "page", "screen"] = "event"

    def event_type(self) -> str:
        return self.type


class EmailBody(_Body):
    """A transactional email (customerio-api.md §5); at most 15 recipients in to/cc/bcc."""

    to: str | list[str]
    identifiers: Identifiers | None = None
    transactional_message_id: str | int | None = None
    message_data: JsonObject | None = None
    from_: str | None = Field(None, alias="from")
    subject: str | None = None
    body: str | None = None
    body_plain: str | None = None
    body_amp: str | None = None
    preheader: str | None = None
    reply_to: str | None = None
    cc: str | list[str] | None = None
    bcc: str | list[str] | None = None
    fake_bcc: bool | None = None
    headers: dict[str, str] | list[dict[str, str]] | str | None = Field(
        None,
        description="Header name to value, a list of {name, value}, or that list as JSON text "
        "(sent as JSON text, as Customer.io documents it); ASCII, no spaces",
    )
    attachments: dict[str, str] | None = Field(
        None, description="Filename (with an extension) to base64 content; 2 MB in total"
    )
    auto_create: bool | None = None
    disable_message_retention: bool | None = None
    send_to_unsubscribed: bool | None = None
    tracked: bool | None = None
    queue_draft: bool | None = None
    disable_css_preprocessing: bool | None = None
    send_at: Timestamp | None = None
    language: str | None = None

    def passthrough(self) -> dict[str, Any]:
        """The optional fields that were given, under their wire names."""
        skip = {"to", "identifiers", "transactional_message_id", "message_data"}
        return {
            k: v
            for k, v in self.model_dump(by_alias=True, exclude_none=True).items()
            if k not in skip
        }


class BroadcastBody(_Body):
    """Trigger data plus at most one audience; no audience uses the one set up in Customer.io."""

    data: JsonObject | None = None
    recipients: JsonObject | None = None
    emails: list[str] | None = None
    ids: list[str | int] | None = None
    per_user_data: list[JsonObject] | None = None
    data_file_url: str | None = None
    id_ignore_missing: bool | None = None
    email_ignore_missing: bool | None = None
    email_add_duplicates: bool | None = None

    def audience(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump(exclude_none=True).items() if k != "data"}


# --- objects and relationships ---------------------------------------------------------------


class ObjectKey(_Body):
    """An object by its type and id; identifying one that does not exist creates it."""

    object_type_id: str | StrictInt = Field(
        description="The object type's id: a whole number from 1, like '1'"
    )
    object_id: str = Field(description="The object's id in its type (up to 150 bytes)")


class CioObject(_Body):
    """An object by Customer.io's own id (only updates: it cannot create one)."""

    cio_object_id: str


ObjectRef = Annotated[
    ObjectKey | CioObject,
    Field(description="An object: object_type_id and object_id, or cio_object_id"),
]


class ObjectRelationship(_Body):
    """A person's relationship to an object, with attributes of the relationship itself."""

    identifiers: ObjectRef
    relationship_attributes: JsonObject | None = None


class PersonRelationship(_Body):
    """An object's relationship to a person (id, email or cio_id), with its attributes."""

    identifiers: PersonRef
    relationship_attributes: JsonObject | None = None


class PersonRelationshipsBody(_Body):
    relationships: list[ObjectRef | ObjectRelationship] = Field(
        description="The objects (at least one; 100,000 bytes in all)"
    )


class ObjectBody(_Body):
    attributes: JsonObject = Field(
        default_factory=dict, description="Attributes to set (the limits of a person's)"
    )
    people: list[PersonRef | PersonRelationship] | None = Field(
        None, description="People to relate the object to (id, email or cio_id)"
    )


class ObjectPeopleBody(_Body):
    people: list[PersonRef | PersonRelationship] = Field(
        description="The people (id, email or cio_id; at least one; 100,000 bytes in all)"
    )


class AnonymousObjectBody(_Body):
    """An object related to someone not identified yet: identifying a person with the same
    ``anonymous_id`` carries the relationship over."""

    anonymous_id: str
    attributes: JsonObject | None = None
    relationship_attributes: JsonObject | None = None


# --- segments and delivery metrics -----------------------------------------------------------


class SegmentPeopleBody(_Body):
    """People to add to, or remove from, a manual segment."""

    ids: list[str] = Field(description="1 to 1000 people, each named by id_type")
    id_type: SegmentIdType = "id"


class MetricBody(_Body):
    """A metric of a delivery sent through a channel that does not report back itself."""

    delivery_id: str = Field(description="The message's CIO-Delivery-ID")
    metric: Metric
    recipient: str | StrictInt | None = Field(
        None, description="An address, a device token, or (SMS) a phone number"
    )
    reason: str | None = Field(None, description="Why it failed (bounced, dropped ...)")
    href: str | None = Field(None, description="The link clicked")
    timestamp: Timestamp | None = Field(None, description="When it happened; default: now")


class PushEventBody(_Body):
    """A device-side push metric, the legacy way (deprecated by Customer.io for MetricBody)."""

    delivery_id: str = Field(description="The notification's CIO-Delivery-ID")
    event: PushMetric
    device_id: str = Field(description="The notification's CIO-Delivery-Token")
    timestamp: Timestamp | None = None


# --- template sends --------------------------------------------------------------------------


class TemplateSendBody(_Body):
    """A transactional message from a template kept in Customer.io (in-app, inbox)."""

    identifiers: Identifiers
    transactional_message_id: str | int = Field(description="The template's id or trigger name")
    message_data: JsonObject | None = None
    send_at: Timestamp | None = None
    language: str | None = None
    queue_draft: bool | None = None
    disable_message_retention: bool | None = None

    def options(self) -> dict[str, Any]:
        """The optional fields that were given, as the builder's keyword arguments."""
        skip = {"type", "identifiers", "transactional_message_id", "message_data"}
        return {k: v for k, v in self.model_dump(exclude_none=True).items() if k not in skip}


class WhatsAppBody(TemplateSendBody):
    """A transactional WhatsApp message: a template approved by Meta."""

    to: str = Field(description="E.164 (+15551234567) or Liquid ({{customer.phone}})")
    tracked: bool | None = None
    send_to_unsubscribed: bool | None = None


#: Bodies whose fields are all optional: an empty body is ``{}``.
OPTIONAL_BODIES: tuple[type[BaseModel], ...] = (IdentifyBody, BroadcastBody, ObjectBody)


# --- batch ----------------------------------------------------------------------------------


class IdentifyItem(IdentifyBody):
    type: Literal["identify"]
    person: PersonRef


class PersonItem(_Body):
    type: Literal["delete", "suppress", "unsuppress"]
    person: PersonRef


class TrackItem(_Body):
    type: Literal["track", "page", "screen"]
    person: PersonRef
    name: str = Field(description="Event name; for a page view, the URL")
    data: JsonObject | None = None
    timestamp: Timestamp | None = None


class AnonymousItem(AnonymousEventBody):
    type: Literal["track_anonymous"]  # type: ignore[assignment]  # the batch's discriminator
    anonymous_type: Literal["event", "page", "screen"] = Field(
        "event", alias="event_type", description="event, or a page or screen view"
    )

    def event_type(self) -> str:
        return self.anonymous_type


class EmailItem(EmailBody):
    type: Literal["send_email"]

    def passthrough(self) -> dict[str, Any]:
        fields = super().passthrough()
        fields.pop("type", None)
        return fields


class BroadcastItem(BroadcastBody):
    type: Literal["trigger_broadcast"]
    broadcast_id: int | str

    def audience(self) -> dict[str, Any]:
        fields = super().audience()
        fields.pop("type", None)
        fields.pop("broadcast_id", None)
        return fields


class PersonRelationshipsItem(PersonRelationshipsBody):
    type: Literal["add_relationships", "delete_relationships"]
    person: PersonRef


class _ObjectItem(_Body):
    object_: ObjectRef = Field(alias="object")


class ObjectItem(_ObjectItem, ObjectBody):
    type: Literal["identify_object"]


class DeleteObjectItem(_ObjectItem):
    type: Literal["delete_object"]


class AnonymousObjectItem(_ObjectItem, AnonymousObjectBody):
    type: Literal["identify_anonymous"]


class ObjectPeopleItem(_ObjectItem, ObjectPeopleBody):
    type: Literal["add_object_relationships", "delete_object_relationships"]


class SegmentItem(SegmentPeopleBody):
    type: Literal["add_to_segment", "remove_from_segment"]
    segment_id: int | str


class MetricItem(MetricBody):
    type: Literal["track_metric"]


class PushEventItem(PushEventBody):
    type: Literal["track_push_metric"]


class TemplateSendItem(TemplateSendBody):
    type: Literal["send_in_app", "send_inbox_message"]


class WhatsAppItem(WhatsAppBody):
    type: Literal["send_whatsapp"]


BatchItem = Annotated[
    IdentifyItem
    | PersonItem
    | TrackItem
    | AnonymousItem
    | EmailItem
    | BroadcastItem
    | PersonRelationshipsItem
    | ObjectItem
    | DeleteObjectItem
    | AnonymousObjectItem
    | ObjectPeopleItem
    | SegmentItem
    | MetricItem
    | PushEventItem
    | TemplateSendItem
    | WhatsAppItem,
    Field(discriminator="type"),
]


class BatchBody(_Body):
    """Operations of mixed kinds, stored all together or not at all."""

    operations: list[BatchItem] = Field(min_length=1, max_length=MAX_BATCH_OPERATIONS)


# --- the user repository (/v1/users) ----------------------------------------------------------


class SyncUserBody(_Body):
    """The person's whole profile: what changed since the last sync is sent, and attributes
    synced before and absent now are cleared (so an empty object clears them all)."""

    attributes: JsonObject = Field(
        description='Every attribute the person should have (null or "" means absent)'
    )


class PreferencesBody(_Body):
    """Customer.io's subscription attributes; at least one of the two."""

    topics: dict[str, bool] | None = Field(
        None, description='Topics by id or name ({"7": false} or {"topic_7": false})'
    )
    unsubscribed: bool | None = Field(None, description="The global unsubscribe")


# --- responses ------------------------------------------------------------------------------


class Accepted(BaseModel):
    """The operations are durable in the outbox; workers deliver them."""

    op_ids: list[str] = Field(description="One ULID per operation, in request order")


class UserChange(BaseModel):
    """What a /v1/users write enqueued: nothing (200) when the person is unchanged."""

    enqueued: bool
    op_ids: list[str] = Field(description="One ULID per operation, in order")


class PreferenceStampBody(BaseModel):
    at: float = Field(description="Unix seconds: the app's clock, or the webhook's timestamp")
    source: Literal["app", "webhook"]


class UserStateBody(BaseModel):
    """What cio-relay knows of a person: as last synced, and their preferences."""

    id: str
    attributes: JsonObject = Field(description="As of the last sync")
    topics: dict[str, bool]
    unsubscribed: bool | None = Field(description="null: never set")
    updated_at: float = Field(description="Unix seconds of the app's last enqueued change")
    preference_times: dict[str, PreferenceStampBody] = Field(
        description="When and from where each preference field was last set"
    )


class ErrorBody(BaseModel):
    error: str = Field(description="A stable code: invalid, too_large, outbox_full ...")
    message: str
    field: str | None = Field(None, description="Where the problem is (validation errors)")
    limit: int | None = Field(None, description="The documented maximum that was exceeded")
    size: int | None = Field(None, description="The size that was given, in `unit`")
    unit: str | None = None
    retry_after: float | None = Field(None, description="Seconds to wait (outbox_full)")
