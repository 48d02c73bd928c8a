"""The core data model: an ``Operation`` and how each kind is built, checked and sent.

An Operation is one thing to tell Customer.io: identify a person, track an event, send a
transactional email ... One concept per module:

- ``kinds``: the kinds of operation and the API family of each;
- ``model``: the ``Operation`` record (and ``PersonRef``), as the outbox stores it;
- ``ids``: op ids (ULIDs);
- ``limits``: Customer.io's documented limits and the checks against them;
- ``validation``: the other checks of what a caller gives;
- ``send_options``: the typed options of the template sends (WhatsApp, in-app, inbox);
- ``builders``: ``OperationFactory``, which builds checked operations for one environment,
  with ``sends`` (transactional sends, broadcast triggers), ``objects`` (objects and
  relationships) and ``segments_metrics`` (manual segment membership, delivery metrics) mixed
  in, each on ``model.OperationMaker``;
- ``wire``: each kind's v1 request and ``/api/v2/batch`` item.

The builders here (``ops.track(...)``) build operations by hand, for no environment yet: the
relay that enqueues one gives it its own (``OperationFactory.adopt``).

Pure: no I/O, no clocks except ``created_at`` defaults, no state but the op id generator's.
"""

from __future__ import annotations

from cio_relay.operations.builders import AnonymousEventType, OperationFactory
from cio_relay.operations.ids import new_op_id
from cio_relay.operations.kinds import Api, Kind
from cio_relay.operations.limits import LIMITS
from cio_relay.operations.model import IDENTIFIER_TYPES, NO_ENV, Operation, PersonRef, new_operation
from cio_relay.operations.objects import ObjectRef
from cio_relay.operations.segments_metrics import Metric, PushMetric, SegmentIdType
from cio_relay.operations.validation import Timestamp
from cio_relay.operations.wire import Request

#: What callers use of the package; the rest is in its modules.
__all__ = [
    "IDENTIFIER_TYPES",
    "LIMITS",
    "NO_ENV",
    "AnonymousEventType",
    "Api",
    "Kind",
    "Metric",
    "ObjectRef",
    "Operation",
    "OperationFactory",
    "PersonRef",
    "PushMetric",
    "Request",
    "SegmentIdType",
    "Timestamp",
    "add_device",
    "add_object_relationships",
    "add_relationships",
    "add_to_segment",
    "delete",
    "delete_device",
    "delete_object",
    "delete_object_relationships",
    "delete_relationships",
    "identify",
    "identify_anonymous",
    "identify_object",
    "merge",
    "new_op_id",
    "new_operation",
    "page",
    "remove_from_segment",
    "screen",
    "send_email",
    "send_in_app",
    "send_inbox_message",
    "send_push",
    "send_sms",
    "send_whatsapp",
    "suppress",
    "track",
    "track_anonymous",
    "track_metric",
    "track_push_metric",
    "trigger_broadcast",
    "unsuppress",
]

_BY_HAND = OperationFactory()

identify = _BY_HAND.identify
delete = _BY_HAND.delete
suppress = _BY_HAND.suppress
unsuppress = _BY_HAND.unsuppress
merge = _BY_HAND.merge
track = _BY_HAND.track
page = _BY_HAND.page
screen = _BY_HAND.screen
track_anonymous = _BY_HAND.track_anonymous
add_device = _BY_HAND.add_device
delete_device = _BY_HAND.delete_device
send_email = _BY_HAND.send_email
send_push = _BY_HAND.send_push
send_sms = _BY_HAND.send_sms
send_whatsapp = _BY_HAND.send_whatsapp
send_in_app = _BY_HAND.send_in_app
send_inbox_message = _BY_HAND.send_inbox_message
trigger_broadcast = _BY_HAND.trigger_broadcast
add_object_relationships = _BY_HAND.add_object_relationships
add_relationships = _BY_HAND.add_relationships
add_to_segment = _BY_HAND.add_to_segment
delete_object = _BY_HAND.delete_object
delete_object_relationships = _BY_HAND.delete_object_relationships
delete_relationships = _BY_HAND.delete_relationships
identify_anonymous = _BY_HAND.identify_anonymous
identify_object = _BY_HAND.identify_object
remove_from_segment = _BY_HAND.remove_from_segment
track_metric = _BY_HAND.track_metric
track_push_metric = _BY_HAND.track_push_metric
