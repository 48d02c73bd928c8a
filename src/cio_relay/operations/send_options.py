"""The options of the sends whose content is a template kept in Customer.io (WhatsApp, in-app,
inbox): their types, checked before anything is stored.

The documents give them as: ``send_at`` a Unix time (converted by the builders),
``language`` a language code, and ``tracked``, ``send_to_unsubscribed``, ``queue_draft``,
``disable_message_retention`` booleans (track-api.json ``sendinapp``, ``sendinbox``,
``transactionalSharedObject``; the official customerio-python 3.2 sends the same fields for
``send_whatsapp``, ``send_in_app`` and ``send_inbox_message``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cio_relay.errors import ValidationError

__all__ = ["FLAG_OPTIONS", "check_send_options"]

#: The options that are booleans: a string "false" would be sent as true-ish text, so it is refused.
FLAG_OPTIONS = frozenset(
    {"tracked", "send_to_unsubscribed", "queue_draft", "disable_message_retention"}
)


def check_send_options(options: Mapping[str, Any]) -> None:
    """Each flag is a bool and ``language`` a non-empty string; options left at None are not
    given here (the builders drop them)."""
    for name, value in options.items():
        if name in FLAG_OPTIONS and not isinstance(value, bool):
            raise ValidationError(name, f"must be true or false, not {type(value).__name__}")
    language = options.get("language")
    if language is not None and (not isinstance(language, str) or not language.strip()):
        raise ValidationError("language", "must be a language code such as 'en' or 'pt-BR'")
