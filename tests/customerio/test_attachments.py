"""``Attachments``: files for a transactional email as base64, refused past the documented 2 MB
when a file is attached, and sent as ``send_email``'s ``attachments`` object."""

from __future__ import annotations

import base64
from pathlib import Path

import orjson
import pytest

from cio_relay import operations as ops
from cio_relay.customerio import Attachments
from cio_relay.customerio.attachments import encoded_size
from cio_relay.errors import LimitExceeded, ValidationError
from cio_relay.operations import LIMITS


def test_bytes_and_text_are_base64_encoded_and_calls_chain() -> None:
    files = Attachments().attach("a.bin", b"\x00\xff").attach("notes.txt", "Paid — thanks")
    assert files == {
        "a.bin": base64.b64encode(b"\x00\xff").decode(),
        "notes.txt": base64.b64encode("Paid — thanks".encode()).decode(),
    }


def test_content_already_encoded_is_kept_as_given_when_valid() -> None:
    assert Attachments().attach("a.csv", "YSxiCg==", encode=False) == {"a.csv": "YSxiCg=="}
    with pytest.raises(ValidationError) as caught:
        Attachments().attach("a.csv", "not base64!", encode=False)
    assert caught.value.field == "attachments.a.csv"


def test_a_file_name_needs_an_extension_and_is_attached_once() -> None:
    with pytest.raises(ValidationError, match="needs an extension"):
        Attachments().attach("README", b"x")
    files = Attachments().attach("a.txt", b"x")
    with pytest.raises(ValidationError, match="already attached"):
        files.attach("a.txt", b"y")
    assert files == {"a.txt": "eA=="}


def test_past_two_megabytes_the_attachment_is_refused_naming_limit_and_size() -> None:
    files = Attachments().attach("one.bin", b"x" * 1_400_000)  # 1,866,668 bytes of base64
    with pytest.raises(LimitExceeded) as caught:
        files.attach("two.bin", b"x" * 150_000)
    assert (caught.value.field, caught.value.limit) == ("attachments", LIMITS.attachments_bytes)
    assert caught.value.size == encoded_size(1_400_000) + encoded_size(150_000)
    assert list(files) == ["one.bin"]  # the refused file is not kept


def test_a_file_is_read_and_named_after_itself(tmp_path: Path) -> None:
    invoice = tmp_path / "invoice.pdf"
    invoice.write_bytes(b"%PDF-1.7")
    files = Attachments().attach_file(invoice).attach_file(invoice, name="copy.pdf")
    assert files == {"invoice.pdf": "JVBERi0xLjc=", "copy.pdf": "JVBERi0xLjc="}


def test_a_file_too_large_is_refused_from_its_size_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = tmp_path / "video.mp4"
    with big.open("wb") as handle:
        handle.truncate(3_000_000)  # sparse: the size is there, the bytes need not be

    def not_read(self: Path) -> bytes:
        raise AssertionError(f"{self.name} was read")

    monkeypatch.setattr(Path, "read_bytes", not_read)
    with pytest.raises(LimitExceeded) as caught:
        Attachments().attach_file(big)
    assert caught.value.size == encoded_size(3_000_000) == 4_000_000


def test_the_encoded_size_is_what_b64encode_writes() -> None:
    for length in range(8):
        assert encoded_size(length) == len(base64.b64encode(b"x" * length))


def test_attachments_travel_as_the_send_email_attachments_object() -> None:
    files = Attachments().attach("a.txt", b"hello")
    op = ops.send_email(to="a@x.test", transactional_message_id=1, attachments=files)
    body = op.v1_request().body
    assert body is not None
    assert orjson.loads(orjson.dumps(body))["attachments"] == {"a.txt": "aGVsbG8="}
