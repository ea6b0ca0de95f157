"""`valid_person_id`: the contract's person_id, checked before any command or page echoes an id
(seed 003: a My Number must never enter the system, nor be shown back)."""

from __future__ import annotations

import msgspec
import pytest

from schemas.codec import BadInput, decode_event
from schemas.events import valid_person_id

CASES = [
    ("P1", True),
    ("a_b-C9", True),
    ("x" * 64, True),
    ("12345678901", True),      # 11 digits: not the shape of a My Number
    ("1234567890123", True),    # 13 digits
    ("A23456789012", True),
    ("123456789012", False),    # 12 digits: a My Number must never be used
    ("", False),
    ("x" * 65, False),
    ("a/b", False),
    ("a b", False),
    ("a.b", False),
    ("P1\n", False),
    ("ｐ1", False),
    ("%41", False),
]


@pytest.mark.parametrize("person_id, ok", CASES)
def test_person_id_validation_follows_the_contract(person_id, ok):
    assert valid_person_id(person_id) is ok


@pytest.mark.parametrize("person_id, ok", CASES)
def test_an_id_is_valid_exactly_when_the_event_decoder_takes_it(person_id, ok):
    raw = msgspec.json.encode({"type": "card.suspended", "event_id": "e1", "person_id": person_id,
                               "occurred_at": "2021-01-01T00:00:00+09:00"})
    try:
        decode_event(raw)
    except BadInput:
        accepted = False
    else:
        accepted = True
    assert accepted is ok
