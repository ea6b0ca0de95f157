"""Stored-data versions (streams/core/versions.py): old layouts are upgraded on read, never rewritten,
and a history that mixes versions replays to exactly the same outcomes and states."""

from __future__ import annotations

import io
from pathlib import Path

import msgspec
import pytest

from devtools.demo import generate
from schemas.journal import (
    JOURNAL_ENCODER,
    JOURNAL_VERSION,
    AnswerEntry,
    EventEntry,
    JournalBatch,
)
from schemas.outcomes import Decision
from streams.audit.export import History, add_journal_raw, read_export, set_table_raw
from streams.audit.replay import record_offline, replay, replay_history
from streams.core import versions as V
from streams.core.config import load_config
from streams.core.ledger import LEDGER_VERSION, UNKNOWN_AT, LedgerRecord, Waiting, pack
from streams.core.state import STATE_VERSION, PersonState

ROOT = Path(__file__).resolve().parents[2]
CFG = load_config(ROOT / "streams" / "data" / "demo.toml")


@pytest.fixture(scope="module")
def recorded():
    return record_offline(list(generate(people=250, seed=21, bad_ratio=0.01)), CFG)


def _as_v0(raw: bytes) -> bytes:
    entry = V.decode_journal_entry(raw)
    if type(entry) is EventEntry:
        return V.event_entry_v0(entry)
    return V.answer_entry_v0(entry)


def test_every_kind_has_a_current_version_and_an_upcaster_from_v0():
    assert V.CURRENT == {"journal_entry": JOURNAL_VERSION, "ledger_record": LEDGER_VERSION,
                         "person_state": STATE_VERSION}
    assert V.registered() == {"journal_entry": [0], "ledger_record": [0, 1],
                              "person_state": [0, 1]}


def test_current_entries_take_the_fast_path_and_decode_to_themselves():
    event = EventEntry(topic="mynapoint.links", partition=2, offset=7, value=b'{"a":1}', late=True)
    answer = AnswerEntry(claim_kind="account", claim_key="demo-pay\x00a", person_id="P1",
                         event_id="e1", granted=False, holder="P2")
    for entry in (event, answer):
        raw = JOURNAL_ENCODER.encode(entry)
        assert V.is_current_journal_entry(raw)
        assert V.decode_journal_entry(raw) == entry


def test_v0_event_entry_names_its_source_in_one_string():
    entry = EventEntry(topic="mynapoint.payments", partition=3, offset=41, value=b"{}", late=True)
    raw_v0 = V.event_entry_v0(entry)
    stored = msgspec.msgpack.decode(raw_v0)
    assert stored == {"k": "event", "source": "mynapoint.payments/3/41", "value": b"{}",
                      "late": True}
    assert not V.is_current_journal_entry(raw_v0)
    assert V.decode_journal_entry(raw_v0) == entry


def test_v0_answer_entry_has_no_version_key():
    answer = AnswerEntry(claim_kind="reservation", claim_key="reservation-budget",
                         person_id="P9", event_id="e9", granted=True)
    raw_v0 = V.answer_entry_v0(answer)
    assert "v" not in msgspec.msgpack.decode(raw_v0)
    assert V.decode_journal_entry(raw_v0) == answer


@pytest.mark.parametrize("obj, message", [
    ({"k": "event", "v": 2, "topic": "t", "partition": 0, "offset": 0, "value": b""}, "newer"),
    ({"k": "event", "v": -1, "topic": "t", "partition": 0, "offset": 0, "value": b""},
     "no upcaster"),
    ({"k": "event", "source": "no-slashes", "value": b""}, "bad source"),
    ({"k": "event", "v": 1, "topic": "t", "partition": "x", "offset": 0, "value": b""},
     "journal entry"),
    ({"k": "nope", "v": 1}, "journal entry"),
    ({"k": "event", "v": "1"}, "not an integer"),
])
def test_unreadable_entries_are_version_errors(obj, message):
    with pytest.raises(V.VersionError, match=message):
        V.decode_journal_entry(msgspec.msgpack.encode(obj))


def test_a_journal_record_of_one_entry_is_a_batch_of_one_in_any_version():
    entry = EventEntry(topic="mynapoint.cards", partition=1, offset=4, value=b"{}")
    for raw in (JOURNAL_ENCODER.encode(entry), V.event_entry_v0(entry)):
        assert V.journal_entries(b"P1", raw) == [(b"P1", entry)]


def test_a_batch_gives_each_entry_with_its_person_and_upgrades_old_entries_in_it():
    event = EventEntry(topic="mynapoint.links", partition=0, offset=3, value=b"{}")
    answer = AnswerEntry(claim_kind="account", claim_key="k", person_id="P2", event_id="e2",
                         granted=True)
    raw = JOURNAL_ENCODER.encode(JournalBatch(persons=[b"P1", b"P2"], entries=[event, answer]))
    assert V.journal_entries(b"P1", raw) == [(b"P1", event), (b"P2", answer)]
    # Entries of an older layout in a batch are read through their own upcasters.
    old = msgspec.msgpack.encode({"k": "batch", "v": 1, "persons": [b"P1", b"P2"], "entries": [
        msgspec.msgpack.decode(V.event_entry_v0(event)),
        msgspec.msgpack.decode(V.answer_entry_v0(answer))]})
    assert V.journal_entries(b"P1", old) == [(b"P1", event), (b"P2", answer)]


@pytest.mark.parametrize("obj, message", [
    ({"k": "batch", "v": 2, "persons": [], "entries": []}, "upgrade mynapoint"),
    ({"k": "batch", "v": 1, "persons": [b"P1"], "entries": []}, "one person"),
    ({"k": "batch", "v": 1, "persons": ["P1"], "entries": [{"k": "answer"}]}, "one person"),
    ({"k": "batch", "v": 1, "persons": [b"P1"], "entries": [{"k": "nope", "v": 1}]},
     "journal entry"),
])
def test_unreadable_batches_are_version_errors(obj, message):
    with pytest.raises(V.VersionError, match=message):
        V.journal_entries(b"P1", msgspec.msgpack.encode(obj))


def test_garbage_is_a_version_error_not_a_crash():
    for raw in (b"", b"\xc1", msgspec.msgpack.encode([1, 2]), msgspec.msgpack.encode("x")):
        with pytest.raises(V.VersionError):
            V.decode_journal_entry(raw)
    with pytest.raises(V.VersionError):
        V.decode_ledger_record(b"\xc1")
    with pytest.raises(V.VersionError):
        V.decode_ledger_record(msgspec.msgpack.encode(["x"]))


def test_a_record_holding_a_newer_person_state_is_refused_not_misread():
    from streams.core.state import PersonState

    newer = LedgerRecord(person=PersonState(v=STATE_VERSION + 1))
    with pytest.raises(V.VersionError, match="newer"):
        V.decode_ledger_record(msgspec.msgpack.encode(newer))
    assert V.decode_ledger_record(msgspec.msgpack.encode(LedgerRecord())) == LedgerRecord()


def test_a_registered_upcaster_must_step_exactly_one_version():
    with pytest.raises(ValueError, match="two upcasters"):
        V.upcaster("journal_entry", 0)(lambda o: o)
    with pytest.raises(ValueError, match="unknown stored kind"):
        V.upcaster("nope", 0)


def test_v0_person_states_upgrade_to_the_same_states(recorded):
    states = [V.decode_ledger_record(raw).person for raw in recorded.table.values()]
    states = [s for s in states if s is not None]
    assert any(s.links for s in states) and any(s.card and s.card.renewed_at for s in states)
    for s in states:
        v0 = V.person_state_v0(s)
        assert isinstance(v0, dict) and "v" not in v0
        assert V.decode_person_state(msgspec.msgpack.encode(v0)) == s


def test_v1_person_states_upgrade_to_the_same_states(recorded):
    states = [V.decode_ledger_record(raw).person for raw in recorded.table.values()]
    with_txns = [s for s in states if s is not None and s.txns]
    assert any(t.refunded for s in with_txns for t in s.txns.values())
    assert {t.counted for s in with_txns for t in s.txns.values()} == {True, False}
    for s in with_txns:
        v1 = V.person_state_v1(s)
        assert v1[0] == 1 and all(type(t[0]) is str for t in v1[10].values())  # campaign first
        assert V.decode_person_state(msgspec.msgpack.encode(v1)) == s


def test_a_v1_payment_that_matches_no_link_is_refused(recorded):
    state = next(s for s in (V.decode_ledger_record(raw).person
                             for raw in recorded.table.values()) if s is not None and s.txns)
    v1 = V.person_state_v1(state)
    key = next(iter(v1[10]))
    v1[10][key][1] = "another account"
    with pytest.raises(V.VersionError, match="matches none of the links"):
        V.decode_person_state(msgspec.msgpack.encode(v1))


DECIDED = Decision(event_id="e0", person_id="P1", type="card.issued", accepted=True, reason=None,
                   outcome_id="9dde72619f8f16d4634b", rules_version="r-1")


def test_v0_ledger_records_upgrade_with_their_people_and_waiting_entries():
    entry = EventEntry(topic="mynapoint.links", partition=1, offset=5, value=b'{"x":1}')
    queued = EventEntry(topic="mynapoint.payments", partition=1, offset=9, value=b'{"y":2}')
    # A record written by a v0 writer: v0 layout, v0 person, v0 journal entries inside.
    record = LedgerRecord(
        offsets={"mynapoint.links/1": 5},
        waiting=Waiting("account", "demo-pay\x00a", "e1", entry.source_id,
                        JOURNAL_ENCODER.encode(entry)),
        queue=(JOURNAL_ENCODER.encode(queued),),
        recent=(("mynapoint.cards/1/0", pack([DECIDED], "P1", "r-1"), UNKNOWN_AT),),
        packed_for=("P1", "r-1"),
    )
    v0 = msgspec.msgpack.decode(V.ledger_record_v0(record))
    v0["waiting"]["entry"] = V.event_entry_v0(entry)
    v0["queue"] = [V.event_entry_v0(queued)]
    raw = msgspec.msgpack.encode(v0)
    assert V.decode_ledger_record(raw) == record


def test_a_history_mixing_v0_and_v1_replays_to_identical_outcomes_and_states(recorded):
    all_v1 = recorded.history()
    expected_records = replay(all_v1.entries(), CFG)
    # Every other stored entry and every third table value in the old layout.
    mixed = History(source="mixed")
    stored_versions = set()
    for i, (partition, offset, key, raw) in enumerate(recorded.journal):
        stored = _as_v0(raw) if i % 2 else raw
        stored_versions.add(V.is_current_journal_entry(stored))
        add_journal_raw(mixed, partition, offset, key, stored)
    assert stored_versions == {True, False}
    mixed.outcomes = all_v1.outcomes
    mixed.records = {}
    for i, (key, raw) in enumerate(recorded.table.items()):
        rec = V.decode_ledger_record(raw)
        stored = V.ledger_record_v0(rec, person_v0=i % 2 == 0) if i % 3 == 0 else raw
        set_table_raw(mixed, "t", key, stored)
    assert not mixed.unreadable

    got, report = replay_history(mixed, CFG)
    assert report.ok, report.render()
    assert report.tables_compared == len(recorded.table)
    assert [msgspec.to_builtins(o) for o in got.outcomes] == [
        msgspec.to_builtins(o) for o in expected_records.outcomes]
    assert {p: r.person for p, r in got.records.items()} == {
        p: r.person for p, r in expected_records.records.items()}


def test_export_keeps_old_entries_as_stored_and_readers_upgrade_them(recorded):
    old = recorded.__class__(
        journal=[(p, o, k, _as_v0(r)) for p, o, k, r in recorded.journal],
        outputs=recorded.outputs, table=recorded.table)
    buf = io.BytesIO()
    old.write_export(buf, CFG)
    lines = buf.getvalue().splitlines()
    first_entry = msgspec.json.decode(lines[1])["entry"]
    # Never rewritten: the export holds the v0 layout as it was stored.
    assert "v" not in first_entry and "/" in first_entry["source"]
    assert isinstance(first_entry["value"], str) and first_entry["value"].startswith("{")
    history = read_export(io.BytesIO(buf.getvalue()))
    _, report = replay_history(history, CFG)
    assert report.ok, report.render()
    assert report.journal_entries == len(recorded.journal)


def test_a_v1_state_with_a_pending_request_is_refused_not_dropped():
    # v2 has no `pending` (no version ever wrote one); were one there, it is not silently lost.
    state = V.person_state_v1(PersonState())
    assert state[-1] is None and V.person_state_from_builtins(state) == PersonState()
    state[-1] = ["account", "demo-pay\x00a", b"{}"]
    with pytest.raises(V.VersionError, match="pending"):
        V.person_state_from_builtins(state)
