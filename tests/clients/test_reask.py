"""`mynapoint reask`'s scan of a persons changelog (clients/reask.py), without a broker: a person
counts as waiting when their latest record waits; a later record, or a deletion, takes them out;
the Quix worker's timeline rows are not people; an unreadable record is counted, not skipped."""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec
import pytest

from clients.reask import _Scan
from schemas import topics
from schemas.journal import JOURNAL_ENCODER, EventEntry
from streams.audit.takeover import quix_key
from streams.core.ledger import RECORD_ENCODER, LedgerRecord, Waiting

FAUST = topics.changelog_topic("app", "persons")
QUIX = topics.quix_changelog_topic("app", topics.JOURNAL)
WAITS = RECORD_ENCODER.encode(LedgerRecord(waiting=Waiting(
    claim_kind="reservation", claim_key="reservation-budget", event_id="r1",
    source_id="mynapoint.reservations/0/1", entry=JOURNAL_ENCODER.encode(EventEntry(
        topic=topics.RESERVATIONS, partition=0, offset=1, value=b"{}")))))
DECIDED = RECORD_ENCODER.encode(LedgerRecord())


class Rec(NamedTuple):
    key: bytes | None
    value: bytes | None
    partition: int = 0
    offset: int = 0


def key_in(changelog: str, person: bytes) -> bytes:
    return quix_key("persons", person) if changelog == QUIX else person


@pytest.mark.parametrize("changelog", [FAUST, QUIX])
@pytest.mark.parametrize(
    ("values", "waits"),
    [
        pytest.param([WAITS], True, id="waits"),
        pytest.param([DECIDED], False, id="decided"),
        pytest.param([DECIDED, WAITS], True, id="waits-again"),
        pytest.param([WAITS, DECIDED], False, id="answered-since"),
        pytest.param([WAITS, None], False, id="deleted-since"),
    ],
)
def test_the_latest_record_of_a_person_decides(changelog: str, values: list[bytes | None],
                                               waits: bool) -> None:
    scan = _Scan(changelog)
    scan.take([Rec(key_in(changelog, b"P1"), v, offset=i) for i, v in enumerate(values)])
    assert list(scan.waiting) == ([b"P1"] if waits else [])
    assert scan.unreadable == 0


def test_timeline_rows_and_keyless_records_are_not_people() -> None:
    scan = _Scan(QUIX)
    timeline_key = quix_key("timeline", b"P1")
    scan.take([Rec(timeline_key, WAITS), Rec(None, WAITS)])
    assert scan.waiting == {}


def test_an_unreadable_record_is_counted_with_where_it_is() -> None:
    scan = _Scan(FAUST)
    newer: Any = msgspec.msgpack.encode([99])  # a layout version no upcaster knows
    scan.take([Rec(b"P1", WAITS), Rec(b"P2", newer, partition=3, offset=7)])
    assert list(scan.waiting) == [b"P1"]
    assert scan.unreadable == 1 and scan.first_error.startswith(f"{FAUST}/3/7: ")
