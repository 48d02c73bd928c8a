"""Customer.io reporting webhooks: verify, persist, route, and feed the data lake.

inbox = SQLiteInbox("cio-relay-data/webhooks.db")
router = Router()

@router.on("email_bounced")
def on_bounce(event: Event) -> None: ...

pipeline = WebhookPipeline(inbox, router, ParquetLake("cio-relay-data/lake"))
receiver = WebhookReceiver(inbox, signing_keys, on_stored=pipeline.notify)  # ASGI app
pipeline.start()
"""

from cio_relay.errors import EventParseError, InboxUnavailableError
from cio_relay.webhooks.builtin import UnsubscribeRecord, install_builtin_handlers
from cio_relay.webhooks.events import (
    METRICS,
    CustomerEvent,
    EmailEvent,
    Event,
    EventName,
    InAppEvent,
    PushEvent,
    SlackEvent,
    SmsEvent,
    SubscriptionEvent,
    UnknownEvent,
    WebhookActionEvent,
    WhatsAppEvent,
    parse_event,
)
from cio_relay.webhooks.inbox import (
    HandlerState,
    Inbox,
    InboxCounts,
    MemoryInbox,
    QuarantinedPayload,
    StoredEvent,
)
from cio_relay.webhooks.intake import Outcome, WebhookIntake
from cio_relay.webhooks.pipeline import PipelineReport, WebhookPipeline
from cio_relay.webhooks.receiver import WebhookReceiver
from cio_relay.webhooks.router import DrainReport, HandlerRetry, ParkEvent, Router
from cio_relay.webhooks.signature import sign, signature_headers, verify
from cio_relay.webhooks.sqlite_inbox import SQLiteInbox

__all__ = [
    "METRICS",
    "CustomerEvent",
    "DrainReport",
    "EmailEvent",
    "Event",
    "EventName",
    "EventParseError",
    "HandlerRetry",
    "HandlerState",
    "InAppEvent",
    "Inbox",
    "InboxCounts",
    "InboxUnavailableError",
    "MemoryInbox",
    "Outcome",
    "ParkEvent",
    "PipelineReport",
    "PushEvent",
    "QuarantinedPayload",
    "Router",
    "SQLiteInbox",
    "SlackEvent",
    "SmsEvent",
    "StoredEvent",
    "SubscriptionEvent",
    "UnknownEvent",
    "UnsubscribeRecord",
    "WebhookActionEvent",
    "WebhookIntake",
    "WebhookPipeline",
    "WebhookReceiver",
    "WhatsAppEvent",
    "install_builtin_handlers",
    "parse_event",
    "sign",
    "signature_headers",
    "verify",
]
