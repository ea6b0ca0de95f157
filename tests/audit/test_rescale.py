"""The pure part of `mynapoint rescale` (streams/audit/rescale.py): where every record goes at M
partitions. The Kafka side is tested on a real broker (tests/integration/test_rescale.py)."""

from __future__ import annotations

import msgspec
import pytest

from schemas.journal import JOURNAL_ENCODER, AnswerEntry, EventEntry
from schemas.topics import PAYMENTS, partition_for_key
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

PEOPLE = [f"P{i:07d}".encode() for i in range(40)]


def _event(person: bytes, topic: str, partition: int, offset: int, when: str = "2021-01-01") -> bytes:
    value = msgspec.json.encode({"event_id": f"{person.decode()}-{offset}",
                                 "person_id": person.decode(),
                                 "occurred_at": f"{when}T00:00:00+09:00"})
    return JOURNAL_ENCODER.encode(EventEntry(topic=topic, partition=partition, offset=offset,
                                             value=value))


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
    journal = {0: [(0, PEOPLE[0], _event(PEOPLE[0], PAYMENTS, 1, 10)),
                   (1, PEOPLE[0], JOURNAL_ENCODER.encode(AnswerEntry(
                       claim_kind="account", claim_key="k", person_id="P0000000", event_id="e",
                       granted=True)))]}
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
    new = {o: at.moved[(p, o)] for o in (2, 5, 7)}
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
