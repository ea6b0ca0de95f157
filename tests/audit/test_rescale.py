"""The pure part of `mynapoint rescale` (streams/audit/rescale.py): where every record goes at M
partitions. The Kafka side is tested on a real broker (tests/integration/test_rescale.py)."""

from __future__ import annotations

import msgspec
import pytest

from schemas.journal import JOURNAL_ENCODER, AnswerEntry, EventEntry, JournalEntry
from schemas.topics import CARDS, PAYMENTS, partition_for_key
from streams.audit.rescale import (
    RescaleError,
    input_moves,
    journal_at,
    journaled_sources,
    latest_values,
    routing_key,
    table_at,
)
from streams.core.claims import BUDGET_COUNT_KEY, RESERVED_PREFIX
from streams.core.rules import BUDGET_KEY
from streams.core.timeline import chunk_key
from streams.core.versions import decode_journal_entry, event_entry_v0
from tests.audit.journals import batch

PEOPLE = [f"P{i:07d}".encode() for i in range(40)]


def _entry(person: bytes, topic: str, partition: int, offset: int,
           when: str = "2021-01-01") -> EventEntry:
    value = msgspec.json.encode({"event_id": f"{person.decode()}-{offset}",
                                 "person_id": person.decode(),
                                 "occurred_at": f"{when}T00:00:00+09:00"})
    return EventEntry(topic=topic, partition=partition, offset=offset, value=value)


def _event(person: bytes, topic: str, partition: int, offset: int, when: str = "2021-01-01") -> bytes:
    return JOURNAL_ENCODER.encode(_entry(person, topic, partition, offset, when))


def _answer(person: bytes) -> AnswerEntry:
    return AnswerEntry(claim_kind="account", claim_key="k", person_id=person.decode(),
                       event_id=f"{person.decode()}-a", granted=True)


def test_journal_keeps_each_persons_order_and_counts_what_was_folded() -> None:
    old: dict[int, list] = {p: [] for p in range(4)}
    for _round in range(6):
        for person in PEOPLE:
            p = partition_for_key(person, 4)
            old[p].append((len(old[p]), person, _event(person, PAYMENTS, p, len(old[p]))))
    committed = {p: len(v) // 2 for p, v in old.items()}
    at = journal_at(old, committed, 8)
    assert sum(at.folded) == sum(committed.values())
    old_pos = {v: (p, o) for p, recs in old.items() for o, _, v in recs}
    for q, records in enumerate(at.partitions):
        assert all(partition_for_key(k, 8) == q for k, _ in records)
        # Folded entries first: the first `folded[q]` are exactly the ones before the commits.
        flags = [old_pos[v][1] < committed[old_pos[v][0]] for _, v in records]
        assert flags == [True] * at.folded[q] + [False] * (len(records) - at.folded[q])
    for person in PEOPLE:
        before = [v for recs in old.values() for _, k, v in recs if k == person]
        after = [v for recs in at.partitions for k, v in recs if k == person]
        assert before == after


def test_journal_whose_start_was_deleted_is_refused() -> None:
    with pytest.raises(RescaleError, match="retention"):
        journal_at({0: [(0, b"P1", b"x")]}, {0: 5}, 8)
    with pytest.raises(RescaleError, match="retention"):
        journal_at({0: [(3, b"P1", b"x")]}, {0: 4}, 8)


def test_table_rows_go_where_the_live_worker_writes_them() -> None:
    person = PEOPLE[3]
    assert routing_key("persons", person) == person
    assert routing_key("timeline", chunk_key(person, 7)) == person
    assert routing_key("claims", RESERVED_PREFIX + person) == BUDGET_KEY.encode()
    assert routing_key("claims", BUDGET_COUNT_KEY) == BUDGET_KEY.encode()
    assert routing_key("claims", b"demo-pay\x00DP-1") == b"demo-pay\x00DP-1"
    rows = latest_values([(person, b"1"), (PEOPLE[4], b"a"), (PEOPLE[4], None), (person, b"2")])
    assert rows == {person: b"2"}
    at = table_at("persons", rows, 8)
    assert at[partition_for_key(person, 8)] == [(person, b"2")]


def test_inputs_not_journaled_move_in_order_and_journaled_ones_stay() -> None:
    journal = [(0, PEOPLE[0], _event(PEOPLE[0], PAYMENTS, 1, 10)),
               (1, PEOPLE[0], JOURNAL_ENCODER.encode(AnswerEntry(
                   claim_kind="account", claim_key="k", person_id="P0000000", event_id="e",
                   granted=True)))]
    journaled = journaled_sources(journal)
    assert journaled == {(PAYMENTS, 1, 10)}
    # Old partition 1 (of 3): offsets 10.. after the commit; 10 was journaled already.
    people = [p for p in PEOPLE if partition_for_key(p, 3) == 1][:4]
    pending = {1: [(10 + i, people[i % 4], msgspec.json.encode(
        {"occurred_at": f"2021-01-0{i + 1}T00:00:00+09:00"}), []) for i in range(8)]}
    moves = input_moves(PAYMENTS, pending, journaled, 5)
    flat = [m for q in moves for m in moves[q]]
    assert (1, 10) not in {m.source for m in flat}
    assert len(flat) == 7
    for q, ms in moves.items():
        assert all(partition_for_key(m.key, 5) == q for m in ms)
        assert [m.source for m in ms] == sorted(m.source for m in ms)


def test_a_new_partition_fed_by_several_old_ones_gets_them_by_event_time() -> None:
    # 3 -> 5 partitions: new partition q takes people from several old partitions.
    by_old: dict[int, list] = {}
    day = 0
    for person in PEOPLE:
        for _ in range(2):
            day += 1
            p = partition_for_key(person, 3)
            by_old.setdefault(p, []).append((day, person, msgspec.json.encode(
                {"occurred_at": f"2021-{1 + day // 28:02d}-{1 + day % 28:02d}T00:00:00+09:00"}),
                []))
    moves = input_moves(PAYMENTS, by_old, set(), 5)
    merged = [q for q, ms in moves.items() if len({m.source[0] for m in ms}) > 1]
    assert merged
    for q in merged:
        days = [m.source[1] for m in moves[q]]  # the offset is the day here
        assert days == sorted(days)


def test_offsets_remembered_by_the_tables_move_with_the_journal() -> None:
    from streams.core.ledger import RECORD_ENCODER, LedgerRecord
    from streams.core.timeline import Head, load_head
    from streams.core.versions import decode_ledger_record

    person = PEOPLE[5]
    p = partition_for_key(person, 4)
    others = [x for x in PEOPLE if partition_for_key(x, 4) == p and x != person][:3]
    # Old partition p: offsets with a gap (a transaction marker at 4); the person at 2, 5, 7.
    rows, offset = [], 0
    for who in [others[0], others[1], person, others[2], None, person, others[0], person]:
        if who is not None:
            rows.append((offset, who, _event(who, PAYMENTS, p, offset)))
        offset += 1
    at = journal_at({p: rows}, {p: 6}, 8)
    new = {o: at.moved[(p, o, person)] for o in (2, 5, 7)}
    assert new[2] < new[5] < at.folded[partition_for_key(person, 8)] <= new[7]
    record = LedgerRecord(recent=(("", b"", 2), ("e5", b"x", 5), ("e7", b"y", 7), ("old", b"z", -1)))
    head = msgspec.msgpack.encode(Head(1, b"line\n", 5))
    persons = table_at("persons", {person: RECORD_ENCODER.encode(record)}, 8, n=4, moved=at.moved)
    timeline = table_at("timeline", {person: head, chunk_key(person, 0): b"sealed"}, 8, n=4,
                        moved=at.moved)
    q = partition_for_key(person, 8)
    got = decode_ledger_record(persons[q][0][1])
    assert [r[2] for r in got.recent] == [new[2], new[5], new[7], -1]
    rows_q = dict(timeline[q])
    assert load_head(rows_q[person]).upto == new[5]
    assert rows_q[chunk_key(person, 0)] == b"sealed"


# --- journal records of several entries (schemas.journal.JournalBatch) --------------------------


def _split_people() -> tuple[int, bytes, bytes, bytes]:
    """An old partition p (of 4) and three of its people: x and y on different partitions at 8."""
    for p in range(4):
        mine = [x for x in PEOPLE if partition_for_key(x, 4) == p]
        xs = [x for x in mine if partition_for_key(x, 8) == p]
        ys = [y for y in mine if partition_for_key(y, 8) != p]
        if len(xs) >= 2 and ys:
            return p, xs[0], ys[0], xs[1]
    raise AssertionError("no partition with people on both of its partitions at 8")


def test_a_batch_is_split_among_its_persons_partitions_and_moved_per_person() -> None:
    from streams.core.ledger import RECORD_ENCODER, LedgerRecord
    from streams.core.timeline import Head, load_head
    from streams.core.versions import decode_ledger_record

    p, x, y, z = _split_people()
    e = {(who, o): _entry(who, CARDS, p, 10 * o + i) for o in range(6)
         for i, who in enumerate((x, y, z))}
    a_z = _answer(z)
    old_x0, old_z3 = JOURNAL_ENCODER.encode(e[(x, 0)]), event_entry_v0(e[(z, 3)])
    rows = [(0, x, old_x0),
            (1, x, batch((x, e[(x, 1)]), (y, e[(y, 1)]), (z, a_z))),
            (2, y, batch((y, e[(y, 2)]), (x, e[(x, 2)]))),
            (3, z, old_z3),
            (4, y, b"\xc1"),  # no version reads it: moved as stored, where its key goes
            (5, z, batch((z, e[(z, 5)])))]
    at = journal_at({p: rows}, {p: 2}, 8)
    entries: dict[bytes, list[tuple[int, bytes]]] = {x: [], y: [], z: []}
    for q, records in enumerate(at.partitions):
        for j, (key, value) in enumerate(records):
            assert key is not None and value is not None and partition_for_key(key, 8) == q
            entries[key].append((j, value))
    one = JOURNAL_ENCODER.encode
    # Each person's entries in their order, each a record of its own; one-entry records of the
    # old layout byte for byte as stored (the v0 one too), a batch's entries encoded alone.
    assert [v for _, v in entries[x]] == [old_x0, one(e[(x, 1)]), one(e[(x, 2)])]
    assert [v for _, v in entries[y]] == [one(e[(y, 1)]), one(e[(y, 2)]), b"\xc1"]
    assert [v for _, v in entries[z]] == [one(a_z), old_z3, one(e[(z, 5)])]
    assert partition_for_key(x, 8) != partition_for_key(y, 8)
    # Folded: the entries of the records before the commit (offsets 0 and 1), on each partition.
    assert at.folded == [sum(1 for who, o in ((x, 0), (x, 1), (y, 1), (z, 1))
                             if partition_for_key(who, 8) == q) for q in range(8)]
    # Moved per person: the two persons of a batch share its old offset, not their new one.
    new = {(who, o): at.moved[(p, o, who)] for who, o in
           [(x, 0), (x, 1), (x, 2), (y, 1), (y, 2), (y, 4), (z, 1), (z, 3), (z, 5)]}
    assert [new[(x, o)] for o in (0, 1, 2)] == [j for j, _ in entries[x]]
    assert [new[(y, o)] for o in (1, 2, 4)] == [j for j, _ in entries[y]]
    assert [new[(z, o)] for o in (1, 3, 5)] == [j for j, _ in entries[z]]
    assert new[(x, 1)] != new[(y, 1)] and (p, 1, b"nobody") not in at.moved
    assert len(at.moved) == 9
    # The offsets a person's rows remember move to where that person's entry went.
    records = {who: RECORD_ENCODER.encode(LedgerRecord(recent=tuple(
        (f"e{o}", b"", o) for o in offsets) + (("old", b"", -1),)))
        for who, offsets in ((x, (1, 2)), (y, (1, 2, 4)), (z, (1, 5)))}
    persons = table_at("persons", records, 8, n=4, moved=at.moved)
    for who, offsets in ((x, (1, 2)), (y, (1, 2, 4)), (z, (1, 5))):
        (got,) = [decode_ledger_record(v) for k, v in persons[partition_for_key(who, 8)]
                  if k == who]
        assert [r[2] for r in got.recent] == [new[(who, o)] for o in offsets] + [-1]
    heads = {x: msgspec.msgpack.encode(Head(1, b"line\n", 1)),
             y: msgspec.msgpack.encode(Head(1, b"line\n", 1))}
    timeline = table_at("timeline", heads, 8, n=4, moved=at.moved)
    for who in (x, y):
        assert load_head(dict(timeline[partition_for_key(who, 8)])[who]).upto == new[(who, 1)]


def test_records_of_one_entry_move_as_stored() -> None:
    p, x, y, _ = _split_people()
    rows = [(0, x, _event(x, CARDS, p, 0)), (1, y, event_entry_v0(_entry(y, CARDS, p, 1))),
            (2, x, JOURNAL_ENCODER.encode(_answer(x))), (3, y, b"\xc1")]
    at = journal_at({p: rows}, {p: 3}, 8)
    got = {(k, v) for records in at.partitions for k, v in records}
    assert got == {(k, v) for _, k, v in rows}
    assert at.moved == {(p, 0, x): 0, (p, 1, y): 0, (p, 2, x): 1, (p, 3, y): 1}
    assert all(decode_journal_entry(v) for k, v in got if v != b"\xc1")


def _sources(*entries: JournalEntry) -> set[tuple[str, int, int]]:
    return {(e.topic, e.partition, e.offset) for e in entries if type(e) is EventEntry}


E1, E2, E3 = (_entry(PEOPLE[i], PAYMENTS, 1, 10 + i) for i in range(3))
ANSWER = _answer(PEOPLE[1])


@pytest.mark.parametrize(("value", "expected"), [
    pytest.param(JOURNAL_ENCODER.encode(E1), _sources(E1), id="one-entry"),
    pytest.param(event_entry_v0(E1), _sources(E1), id="one-entry-v0"),
    pytest.param(JOURNAL_ENCODER.encode(ANSWER), set(), id="answer"),
    pytest.param(batch((PEOPLE[0], E1), (PEOPLE[1], ANSWER), (PEOPLE[2], E3)), _sources(E1, E3),
                 id="batch"),
    pytest.param(batch((PEOPLE[1], E2)), _sources(E2), id="batch-of-one"),
    pytest.param(msgspec.msgpack.encode({"k": "batch", "v": 2, "persons": [PEOPLE[0]],
                                         "entries": [msgspec.to_builtins(E1)]}), set(),
                 id="newer-batch"),
    pytest.param(b"\xc1", set(), id="garbage"),
    pytest.param(None, set(), id="no-value"),
])
def test_journaled_sources_of_a_record(value: bytes | None,
                                       expected: set[tuple[str, int, int]]) -> None:
    assert journaled_sources([(0, PEOPLE[0], value)]) == expected


def test_journaled_sources_since_the_committed_offsets_are_the_rest() -> None:
    # A rescale asks only about input records at or after the group's committed offsets.
    journal = [(0, PEOPLE[0], JOURNAL_ENCODER.encode(E1)),
               (1, PEOPLE[1], JOURNAL_ENCODER.encode(E2)),
               (2, PEOPLE[2], JOURNAL_ENCODER.encode(E3))]
    every = journaled_sources(journal)
    assert len(every) == 3
    for (topic, partition, offset) in every:
        since = {topic: {partition: offset}}
        assert journaled_sources(journal, since=since) == {s for s in every if s[2] >= offset}
    assert journaled_sources(journal, since={}) == every
    assert journaled_sources(journal, since={PAYMENTS: {0: 99}}) == every  # another partition
