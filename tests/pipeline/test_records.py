"""What the steps do with one record (streams/pipeline/ledger.py `journal_record` and
`fold_entry`, streams/pipeline/intake.py `checked_record`): stored values
of earlier versions are upgraded on read, and what cannot be read or decided becomes a dead letter
with a reason instead of stopping the agent."""

from __future__ import annotations

import msgspec
import pytest

from schemas.codec import (
    INTERNAL_ERROR,
    UNREADABLE_JOURNAL_ENTRY,
    UNREADABLE_STATE,
    BadInput,
)
from schemas.journal import JOURNAL_ENCODER, EventEntry
from streams.core.config import build_config
from streams.core.ledger import RECORD_ENCODER, fold
from streams.core.versions import event_entry_v0, ledger_record_v0
from streams.pipeline import intake as intake_module
from streams.pipeline import ledger as ledger_module
from streams.pipeline.intake import checked_record
from streams.pipeline.ledger import fold_entry, journal_record
from tests.builders import card, reserve

CFG = build_config({"services": [{"id": "demo-pay", "name": "Demo Pay"}]})


def fold_stored(key, value, read, rules, **offsets):
    """What the ledger does with a journal record of one entry: read it, fold it."""
    (person, entry), = journal_record(key, value)
    return fold_entry(person, entry, read, rules, **offsets)

CARD = card(event_id="c1")
KEY = reserve(event_id="k1")


def entry(event: dict, offset: int) -> EventEntry:
    return EventEntry(topic="mynapoint.cards", partition=0, offset=offset,
                      value=msgspec.json.encode(event))


def test_a_current_entry_folds_as_the_core_folds_it():
    e = entry(CARD, 0)
    record, folded = fold_stored(b"P1", JOURNAL_ENCODER.encode(e), {}.get, CFG)
    assert record is None
    assert folded == fold(None, e, CFG)


def test_values_stored_by_an_earlier_version_are_upgraded_on_read():
    first = fold(None, entry(CARD, 0), CFG)
    second = entry(KEY, 1)
    _, from_v0 = fold_stored(b"P1", event_entry_v0(second),
                             {b"P1": ledger_record_v0(first.record)}.get, CFG)
    _, from_v1 = fold_stored(b"P1", JOURNAL_ENCODER.encode(second),
                             {b"P1": RECORD_ENCODER.encode(first.record)}.get, CFG)
    assert from_v0 == from_v1


GOOD = JOURNAL_ENCODER.encode(entry(CARD, 0))


@pytest.mark.parametrize(("key", "raw"), [
    (b"P1", b""), (b"P1", None), (b"P1", b"not msgpack \xff"), (b"P1", msgspec.msgpack.encode([1, 2])),
    (b"P1", msgspec.msgpack.encode({"k": "event"})),
    (b"P1", msgspec.msgpack.encode({"k": "event", "v": 99, "x": 1})),
    (b"P1", b"\x81\xa1k\xa2\xff\xfe"),  # a msgpack string that is not UTF-8
    (None, GOOD), (b"", GOOD),
])
def test_an_unreadable_journal_record_is_refused_with_its_reason(key, raw):
    def read(key):
        raise AssertionError("nothing is read for a record that cannot be used")

    with pytest.raises(BadInput) as caught:
        fold_stored(key, raw, read, CFG)
    assert caught.value.reason == UNREADABLE_JOURNAL_ENTRY
    assert "mynapoint.journal" in caught.value.message


@pytest.mark.parametrize("stored", [b"\xc1", msgspec.msgpack.encode([99, None, {}, None, [], []])])
def test_an_unreadable_stored_record_is_refused_naming_the_person(stored):
    with pytest.raises(BadInput) as caught:
        fold_stored(b"P1", GOOD, {b"P1": stored}.get, CFG)
    assert caught.value.reason == UNREADABLE_STATE
    assert caught.value.fields == {"person_id": "P1"}


def test_a_failure_in_the_fold_is_reported_not_raised(monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(ledger_module, "fold", broken)
    with pytest.raises(BadInput) as caught:
        fold_stored(b"P1", GOOD, {}.get, CFG)
    assert caught.value.reason == INTERNAL_ERROR
    assert "KeyError" in caught.value.message and "bug" in caught.value.message


def test_a_failure_in_validation_is_reported_not_raised(monkeypatch):
    def broken(value):
        raise RuntimeError("a bug")

    monkeypatch.setattr(intake_module, "decode_event", broken)
    with pytest.raises(BadInput) as caught:
        checked_record(b"P1", msgspec.json.encode(CARD))
    assert caught.value.reason == INTERNAL_ERROR and "RuntimeError" in caught.value.message


def test_bad_input_keeps_its_own_reason():
    with pytest.raises(BadInput) as caught:
        checked_record(None, msgspec.json.encode(CARD))
    assert caught.value.reason == "bad_key"
