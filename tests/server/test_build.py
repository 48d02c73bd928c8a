"""Operation building for the API: fast ULID op ids, batch field names, people in paths."""

from __future__ import annotations

import time

import pytest
from ulid import ULID

from cio_relay.config import Settings
from cio_relay.errors import ValidationError
from cio_relay.operations import new_op_id
from cio_relay.server import schemas as s
from cio_relay.server.build import OperationBuilder, person_from_path


def test_op_ids_are_unique_ulids_of_now() -> None:
    before = time.time()
    ids = [new_op_id() for _ in range(5000)]
    after = time.time()
    assert len(set(ids)) == len(ids)
    for op_id in ids[::97]:
        parsed = ULID.from_str(op_id)
        assert str(parsed) == op_id
        assert before - 0.001 <= parsed.timestamp <= after + 0.001


def test_builder_stamps_the_environment_like_the_relay() -> None:
    builder = OperationBuilder(Settings(env="staging"))
    body = s.BatchBody.model_validate(
        {"operations": [{"type": "track", "person": "u-1", "name": "paid", "data": {"x": 1}}]}
    )
    (op,) = builder.batch(body)
    assert op.env == "staging"
    assert op.payload["data"] == {"x": 1, "_env": "staging"}
    assert ULID.from_str(op.op_id)


@pytest.mark.parametrize(
    ("id_type", "identifiers"),
    [
        (None, {"id": "ada@x.io"}),
        ("", {"id": "ada@x.io"}),
        ("id", {"id": "ada@x.io"}),
        ("email", {"email": "ada@x.io"}),
        ("cio_id", {"cio_id": "ada@x.io"}),
    ],
)
def test_a_person_in_the_path_is_the_same_person_however_it_is_given(
    id_type: str | None, identifiers: dict[str, str]
) -> None:
    builder = OperationBuilder(Settings())
    person = person_from_path("ada@x.io", id_type)
    assert builder.simple("delete", person).identifiers == identifiers
    assert builder.event(person, "paid", None, None, "event").identifiers == identifiers


def test_an_unknown_id_type_in_the_path_names_the_parameter() -> None:
    with pytest.raises(ValidationError) as raised:
        person_from_path("ada@x.io", "fax")
    assert raised.value.field == "id_type"
