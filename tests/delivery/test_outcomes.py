"""What a failed request means for its operation (``delivery/outcomes.py``): pure decisions,
one case per rule of design.md contracts 2 and 4."""

from __future__ import annotations

import pytest

from cio_relay import operations as ops
from cio_relay.delivery.outcomes import (
    GiveUp,
    Retry,
    describe_item_error,
    judge_failure,
    refused_whole,
)
from cio_relay.errors import AmbiguousError, ApiError, PermanentError, RetryableError
from cio_relay.outbox.base import DeadReason

EVENT = ops.track("u", "e")  # idempotent: its op id de-duplicates at Customer.io
EMAIL = ops.send_email(to="a@x.test", transactional_message_id=1)  # not idempotent


@pytest.mark.parametrize(
    ("exc", "verdict"),
    [
        (RetryableError("429", status=429, retry_after=2.0), Retry(2.0, pause_family=True)),
        (RetryableError("503", status=503), Retry(None)),
        (RetryableError("502", status=502), Retry(None)),  # idempotent: safe to resend
        (AmbiguousError("read timeout"), Retry(None)),
        (PermanentError("401", status=401), Retry(credentials_refused=True)),
        (
            PermanentError("400: bad name", status=400),
            GiveUp(DeadReason.PERMANENT, "400: bad name"),
        ),
    ],
)
def test_an_idempotent_operation(exc: ApiError, verdict: Retry | GiveUp) -> None:
    assert judge_failure(EVENT, exc, may_resend=True) == verdict


@pytest.mark.parametrize(
    ("exc", "retried"),
    [
        (RetryableError("503", status=503), True),  # 503 says it was not processed
        (RetryableError("429", status=429, retry_after=1.0), True),
        (RetryableError("connect refused"), True),  # before the write
        (RetryableError("502", status=502), False),  # a gateway may have lost the answer
        (RetryableError("500", status=500), False),
        (AmbiguousError("read timeout"), False),
    ],
)
def test_a_transactional_send_is_retried_only_when_known_unsent(
    exc: ApiError, retried: bool
) -> None:
    verdict = judge_failure(EMAIL, exc, may_resend=False)
    if retried:
        assert isinstance(verdict, Retry)
    else:
        assert isinstance(verdict, GiveUp)
        assert verdict.reason is DeadReason.AMBIGUOUS
        assert "may or may not have been processed" in verdict.detail


def test_retry_ambiguous_resends_what_may_have_been_processed() -> None:
    assert judge_failure(EMAIL, AmbiguousError("timeout"), may_resend=True) == Retry(None)


def test_only_a_batch_refused_for_its_content_is_bisected() -> None:
    assert refused_whole(PermanentError("400", status=400))
    assert not refused_whole(PermanentError("401", status=401))
    assert not refused_whole(RetryableError("503", status=503))


def test_a_refused_item_is_described_whatever_its_shape() -> None:
    class ItemError:
        field, message, reason = "name", "too long", None

    assert describe_item_error({"field": "id", "message": "missing"}) == (
        "refused in batch: id: missing"
    )
    assert describe_item_error(ItemError()) == "refused in batch: name: too long"
    assert describe_item_error(42) == "refused in batch: 42"
