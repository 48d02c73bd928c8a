"""``Attachments``: files for a transactional email, base64-encoded as Customer.io takes them.

The documents give ``attachments`` as an object of filename -> base64 content; each filename
has an extension, and "the total size of all attachments must be less than 2 MB"
(track-api.json ``attachments``). The official customerio-python offers the same through
``SendEmailRequest.attach(name, content, encode=True)``; this is that helper, checked as each
file is added, so an oversized message is refused when the file is attached, naming the field,
the limit and the size (``LimitExceeded``), not when the send is enqueued.

    files = Attachments().attach_file("invoice.pdf").attach("notes.txt", "Paid, thank you")
    relay.send_email(to="ada@example.com", transactional_message_id="receipt",
                     attachments=files)

The size counted is that of the base64 text (what travels and what ``limits.check_attachments``
measures again when the send is built): one check, the same number in both places.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Self

from cio_relay.errors import LimitExceeded, ValidationError
from cio_relay.operations.limits import LIMITS, check_attachments

__all__ = ["Attachments", "encoded_size"]


def encoded_size(raw_bytes: int) -> int:
    """The length of the base64 text of ``raw_bytes`` bytes (padded, as ``b64encode`` writes)."""
    return 4 * ((raw_bytes + 2) // 3)


class Attachments(dict[str, str]):
    """Filename -> base64 content, the ``attachments`` field of ``send_email``.

    A ``dict`` so it travels as it is (JSON, the outbox); ``attach`` and ``attach_file`` return
    it, so calls chain.
    """

    def attach(self, name: str, content: bytes | str, *, encode: bool = True) -> Self:
        """Add ``content`` as ``name`` (which needs an extension, like ``report.csv``).

        Text is encoded as UTF-8 first. ``encode=False`` takes ``content`` as base64 already
        (it must be valid base64). Raises ``ValidationError`` for a name without an extension
        or already attached, ``LimitExceeded`` when the message's attachments would pass 2 MB.
        """
        if not isinstance(name, str) or not name.strip():
            raise ValidationError("attachments", "an attachment needs a file name")
        if name in self:
            raise ValidationError("attachments", f"{name!r} is already attached")
        if encode:
            raw = content.encode() if isinstance(content, str) else bytes(content)
            text = base64.b64encode(raw).decode("ascii")
        else:
            text = _checked_base64(name, content)
        check_attachments({**self, name: text})  # extension and total, before keeping it
        self[name] = text
        return self

    def attach_file(self, path: str | os.PathLike[str], *, name: str | None = None) -> Self:
        """Add the file at ``path``, as ``name`` (its own file name when not given).

        A file that would pass the limit is refused from its size, before it is read.
        """
        file = Path(path)
        projected = self.encoded_total() + encoded_size(file.stat().st_size)
        if projected > LIMITS.attachments_bytes:
            raise LimitExceeded("attachments", LIMITS.attachments_bytes, projected)
        return self.attach(name or file.name, file.read_bytes())

    def encoded_total(self) -> int:
        """The size of the attachments as they travel (base64 text, ASCII: one byte a char)."""
        return sum(len(text) for text in self.values())


def _checked_base64(name: str, content: bytes | str) -> str:
    text = content.decode("ascii", "replace") if isinstance(content, bytes) else content
    try:
        base64.b64decode(text, validate=True)
    except ValueError:
        raise ValidationError(f"attachments.{name}", "is not valid base64") from None
    return text
