"""kept_json: orjson's output, copied to its own size so that a kept result pins no buffer."""

from __future__ import annotations

import orjson
import pytest

from cio_relay import kept_json
from tests.fixtures.memory import needs_proc, resident_growth

# Keeps 20,000 results of a record-sized JSON value each and prints the growth.
_KEEP_RESULTS = """
from cio_relay import kept_json

values = [["track", 1.5, "production", {"id": f"user-{n}"}, {"name": "paid", "n": n}]
          for n in range(20_000)]
before = rss()
kept = [kept_json.dumps(value) for value in values]
print(rss() - before)
"""


def test_dumps_is_orjson_output() -> None:
    value = {"i": {"id": "u1"}, "p": {"name": "paid", "data": {"total": 3.5, "ok": True}}}
    assert kept_json.dumps(value) == orjson.dumps(value)
    assert kept_json.right_sized(b'{"a":1}') == b'{"a":1}'


def test_dumps_refuses_what_orjson_refuses() -> None:
    with pytest.raises(TypeError):
        kept_json.dumps({"when": object()})


@needs_proc
def test_a_kept_result_costs_its_size_not_a_serialiser_buffer() -> None:
    # Each result is ~90 bytes; a kept orjson.dumps result pinned its ~4 KB buffer (80 MB here).
    assert resident_growth(_KEEP_RESULTS) < 20_000 * 500
