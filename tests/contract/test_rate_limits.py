"""The default Track rate is the one Customer.io documents, read from its own document."""

from __future__ import annotations

import re

from cio_relay.config import Settings

from .openapi import document


def test_the_default_track_rate_is_the_documented_one() -> None:
    description = document("track-api.json")["info"]["description"]
    found = re.search(r"Track API has a rate limit of ([\d,]+) requests per second", description)
    assert found, "the document no longer states the Track rate limit where it did"
    documented = int(found.group(1).replace(",", ""))
    assert Settings(_env_file=None).track_rate == documented
