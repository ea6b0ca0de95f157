"""Takeover's layouts (streams/audit/takeover.py): every row of one engine's state lands where the
other engine keeps it, on the partition its routing key has, and comes back unchanged."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import topics
from schemas.topics import partition_for_key
from streams.audit.rescale import routing_key, table_at
from streams.audit.takeover import TakeoverError, faust_row, quix_key, to_faust, to_quix
from streams.core.claims import BUDGET_COUNT_KEY, RESERVED_PREFIX
from streams.core.rules import BUDGET_KEY
from streams.core.timeline import chunk_key

PEOPLE = [b"P00001", b"P00002", b"alice_9", b"x-y"]
ACCOUNTS = [b"demo-pay:ACC-1", b"demo-pay:a|b", b"pre|pay:|x|"]


def faust_tables() -> dict[str, dict[bytes, bytes]]:
    persons = {p: b"record of " + p for p in PEOPLE}
    timeline = {p: b"head of " + p for p in PEOPLE}
    timeline |= {chunk_key(p, n): b"chunk %d of " % n + p for p in PEOPLE[:2] for n in range(3)}
    claims = {a: b"holder of " + a for a in ACCOUNTS}
    claims |= {RESERVED_PREFIX + p: b"1" for p in PEOPLE[:3]}
    claims[BUDGET_COUNT_KEY] = b"3"
    return {"persons": persons, "timeline": timeline, "claims": claims}


def test_quix_keys_are_the_workers_own() -> None:
    # What quix_worker/app.py's stores write under the record's key (schemas.topics for the person).
    assert quix_key("persons", b"P1") == topics.quix_state_key(b"P1", topics.QUIX_PERSONS_TAG,
                                                                b"P1") == b"P1|p:P1"
    assert quix_key("timeline", chunk_key(b"P1", 2)) == b"P1|t:" + chunk_key(b"P1", 2)
    assert quix_key("claims", b"demo-pay:a|b") == b"demo-pay:a|b|demo-pay:a|b"
    assert quix_key("claims", BUDGET_COUNT_KEY) == BUDGET_KEY.encode() + b"|" + BUDGET_COUNT_KEY
    assert topics.quix_person_of(quix_key("persons", b"P1")) == b"P1"


@pytest.mark.parametrize("partitions", [1, 4, 7])
def test_faust_to_quix_and_back_keeps_every_row_on_its_partition(partitions: int) -> None:
    tables = faust_tables()
    quix = to_quix(tables, partitions)
    assert set(quix) == {topics.JOURNAL, topics.CLAIMS}
    journal_rows = sum(len(p) for p in quix[topics.JOURNAL])
    assert journal_rows == len(tables["persons"]) + len(tables["timeline"])
    # Each state row on the partition of the record key Quix scoped it to (the prefix).
    for source, parts in quix.items():
        for p, rows in enumerate(parts):
            for key, _ in rows:
                found = faust_row(source, key)
                assert found is not None, key
                table, row = found
                prefix = routing_key(table, row)
                assert key.startswith(prefix + b"|") and key == quix_key(table, row)
                assert partition_for_key(prefix, partitions) == p, (source, key)
    states = {source: {k: v for part in parts for k, v in part} for source, parts in quix.items()}
    back = to_faust(states, partitions)
    assert {t: {k: v for part in parts for k, v in part} for t, parts in back.items()} == tables
    # And on the partitions the Faust worker writes them to (rescale's placement).
    for table, rows in tables.items():
        assert back[table] == table_at(table, rows, partitions)


def test_a_key_that_is_none_of_the_rows_is_refused_not_dropped() -> None:
    with pytest.raises(TakeoverError, match="none of the pipeline's rows"):
        to_faust({topics.JOURNAL: {b"P1|x:P1": b"?"}}, 4)
    with pytest.raises(TakeoverError):
        to_faust({topics.JOURNAL: {b"P1|p:P2": b"?"}}, 4)  # another person's row
    with pytest.raises(TakeoverError):
        to_faust({topics.CLAIMS: {b"acct|other": b"?"}}, 4)
    assert faust_row("mynapoint.other", b"P1|p:P1") is None


@given(st.lists(st.binary(min_size=1, max_size=12).filter(lambda b: b"\x00" not in b),
                max_size=20))
def test_any_claim_key_round_trips(keys: list[bytes]) -> None:
    claims = {k: b"h" for k in keys}
    quix = to_quix({"claims": claims}, 3)
    states = {topics.CLAIMS: {k: v for part in quix[topics.CLAIMS] for k, v in part}}
    back = to_faust(states, 3)["claims"]
    assert {k: v for part in back for k, v in part} == claims
