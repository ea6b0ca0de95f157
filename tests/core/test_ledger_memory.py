"""The ledger record's memory of recent outcomes (streams/core/ledger.py): packed, and only for the
uncommitted tail, yet every repeat after a crash is exact and the timeline loses and doubles
nothing.

The crash model is the worker's: sends (the `persons` and `timeline` changelogs, the outcomes) are
flushed before a journal offset is committed; a kill -9 keeps, of each, any part of what was sent
since the last commit (in order: a suffix may be lost), and the worker restarts from the committed
offset with its tables recovered from their changelogs.
"""

from __future__ import annotations

import random
import statistics
from collections import defaultdict

import msgspec
import pytest

from devtools.demo import generate
from schemas import topics
from schemas.codec import OUTCOME_DECODER, OUTCOME_ENCODER
from schemas.journal import JOURNAL_DECODER, EventEntry
from schemas.outcomes import Decision, Grant
from streams.audit.replay import record_offline
from streams.core import versions as V
from streams.core.config import load_config
from streams.core.ledger import (
    RECENT,
    RECORD_ENCODER,
    UNKNOWN_AT,
    fold,
    pack,
    remembered_lines,
    unpack,
)
from streams.core.timeline import history, writes_after_fold
from tests.core.test_ledger_fold import NO_BUDGET, _line

CFG = load_config("streams/data/demo.toml")
_OUTPUT_TOPICS = {topics.DECISIONS, topics.GRANTS, topics.ALERTS}


@pytest.fixture(scope="module")
def recorded():
    # One journal partition, so that the journal offset of an entry is its index.
    return record_offline(generate(40, seed=11), CFG, partitions=1)


def test_packed_outcomes_are_the_same_outcomes(recorded):
    outcomes = [OUTCOME_DECODER.decode(raw) for t, _p, _o, _k, raw in recorded.outputs
                if t in _OUTPUT_TOPICS]
    assert {type(o) for o in outcomes} >= {Decision, Grant}
    for o in outcomes:
        for person, version in ((o.person_id, CFG.version), ("someone else", "r-other")):
            back = unpack(pack([o], person, version), person, version)
            assert back == [o]
            assert OUTCOME_ENCODER.encode(back[0]) == OUTCOME_ENCODER.encode(o)
    # The person id and rules version are left out when they are the record's.
    o = outcomes[0]
    assert len(pack([o], o.person_id, CFG.version)) < len(pack([o], "", ""))
    packed = pack([o], o.person_id, CFG.version)
    assert CFG.version.encode() not in packed
    assert packed.count(o.person_id.encode()) == o.event_id.count(o.person_id)  # in its event id


def _payment(i: int) -> bytes:
    return _line(f"s{i}", "p9", "service.preregistered", "2020-08-01T09:00:00+09:00",
                 service_id="demo-pay", service_account=f"a{i}")


def test_the_memory_keeps_the_uncommitted_tail_after_an_anchor():
    rec = None
    for i in range(10):
        rec = fold(rec, EventEntry(topic="t", partition=0, offset=i, value=_payment(i)),
                   NO_BUDGET, at=100 + i, committed=100 + max(0, i - 2)).record
    # Entries 7, 8, 9 are at or above the committed offset (107); 6 is the newest below it.
    assert [(r[0], r[2]) for r in rec.recent] == [
        ("", 106), ("t/0/7", 107), ("t/0/8", 108), ("t/0/9", 109)]
    assert rec.recent[0][1] == b""
    assert remembered_lines(rec)[0] == ("", b"", 106)
    # A repeat of an uncommitted entry re-emits its outcomes; of a committed one, nothing.
    again = fold(rec, EventEntry(topic="t", partition=0, offset=8, value=_payment(8)), NO_BUDGET)
    assert again.repeat and [o.event_id for o in again.outcomes] == ["s8"]
    old = fold(rec, EventEntry(topic="t", partition=0, offset=3, value=_payment(3)), NO_BUDGET)
    assert old.repeat and old.outcomes == []


def test_without_offsets_the_memory_keeps_the_last_entries():
    rec = None
    for i in range(RECENT + 5):
        rec = fold(rec, EventEntry(topic="t", partition=0, offset=i, value=_payment(i)),
                   NO_BUDGET).record
    assert len(rec.recent) == RECENT
    assert {r[2] for r in rec.recent} == {UNKNOWN_AT}


def _crashing_worker(journal, rnd: random.Random, commit_every: int, crashes: int,
                     chunk_lines: int = 4):
    """The ledger agent over one journal partition, killed `crashes` times at random."""
    persons_log: list[tuple[bytes, bytes]] = []
    timeline_log: list[tuple[bytes, bytes]] = []
    outputs: list[bytes] = []
    logs = (persons_log, timeline_log, outputs)
    flushed = [0, 0, 0]
    committed = 0
    persons: dict[bytes, bytes] = {}
    timeline: dict[bytes, bytes] = {}
    crash_at = sorted(rnd.sample(range(1, len(journal)), crashes))
    i = 0
    steps = 0
    while i < len(journal):
        if crash_at and steps == crash_at[0]:
            crash_at.pop(0)
            for log, f in zip(logs, flushed, strict=True):
                del log[rnd.randint(f, len(log)):]
            persons = dict(persons_log)
            timeline = dict(timeline_log)
            i = committed
        steps += 1
        key, raw = journal[i]
        stored = persons.get(key)
        record = V.decode_ledger_record(stored) if stored is not None else None
        folded = fold(record, JOURNAL_DECODER.decode(raw), CFG, at=i, committed=committed)
        if folded.record is not record:
            value = RECORD_ENCODER.encode(folded.record)
            persons[key] = value
            persons_log.append((key, value))
        if folded.outcomes:
            writes = writes_after_fold(key, timeline.get(key), remembered_lines(folded.record),
                                       chunk_lines)
            # Building only the lines the head may miss writes the same.
            assert writes == writes_after_fold(
                key, timeline.get(key),
                lambda upto, rec=folded.record: remembered_lines(rec, upto),
                chunk_lines)
            for tkey, tvalue in writes:
                timeline[tkey] = tvalue
                timeline_log.append((tkey, tvalue))
        outputs.extend(OUTCOME_ENCODER.encode(o) for o in folded.outcomes)
        i += 1
        if i % commit_every == 0:
            # Faust flushes every send before it commits.
            flushed = [len(log) for log in logs]
            committed = i
    return outputs, timeline, persons


@pytest.mark.parametrize("seed", range(6))
def test_crashes_lose_nothing_and_every_repeat_is_exact(recorded, seed):
    rnd = random.Random(seed)
    journal = [(key, raw) for _p, _o, key, raw in recorded.journal]
    expected: dict[bytes, bytes] = {}
    expected_lines: dict[bytes, list[bytes]] = defaultdict(list)
    for t, _p, _o, key, raw in recorded.outputs:
        if t in _OUTPUT_TOPICS:
            expected[msgspec.json.decode(raw)["outcome_id"].encode()] = raw
            expected_lines[key].append(raw + b"\n")

    outputs, timeline, persons = _crashing_worker(
        journal, rnd, commit_every=rnd.choice([3, 7, 20]), crashes=8)

    first: dict[bytes, bytes] = {}
    for raw in outputs:
        oid = msgspec.json.decode(raw)["outcome_id"].encode()
        assert first.setdefault(oid, raw) == raw  # a repeat is the same bytes
    assert first == expected  # nothing lost, nothing new
    for key, lines in expected_lines.items():
        assert history(key, timeline.get(key), timeline.get) == b"".join(lines), key
    # The memory is the uncommitted tail: no record remembers more than its anchor and the
    # entries of the last commit interval.
    assert max(len(V.decode_ledger_record(v).recent) for v in persons.values()) <= 21


def test_a_v1_record_reads_as_the_same_memory(recorded):
    for raw in recorded.table.values():
        record = V.decode_ledger_record(raw)
        assert record.recent and {r[2] for r in record.recent} == {UNKNOWN_AT}
        upgraded = V.decode_ledger_record(V.ledger_record_v1(record))
        assert remembered_lines(upgraded) == remembered_lines(record)
        assert upgraded.person == record.person and upgraded.offsets == record.offsets
        assert upgraded == record  # packed for the same person and rules version


def test_the_persons_record_of_the_demo_history_is_under_a_kilobyte():
    """At the worker's commit cadence (bench/bench_footprint.py, which also gives p99 and the
    other cadences). Sizes are deterministic, so the bound cannot be flaky."""
    lines = list(generate(2000, seed=7))
    kept = record_offline(lines, CFG, commit_every=2500).table.values()
    old = [len(V.ledger_record_v1(V.decode_ledger_record(raw)))
           for raw in record_offline(lines, CFG).table.values()]
    assert statistics.mean(len(v) for v in kept) <= 1024 < statistics.mean(old)
