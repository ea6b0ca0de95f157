"""The ledger's journal fold (streams/core/ledger.py), driven in memory the way the pipeline drives it.

Claims travel to a claims owner and their answers come back later through the journal, other
people's entries in between; entries are redelivered. Per person the outcomes must equal
`simulate`'s, and every repeat must be an exact repeat.
"""

from __future__ import annotations

import random
from collections import defaultdict

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from schemas.codec import EVENT_DECODER, OUTCOME_ENCODER
from schemas.journal import AnswerEntry, EventEntry
from streams.audit.simulate import run
from streams.core.claims import Claims
from streams.core.config import build_config
from streams.core.ledger import RECENT, fold
from tests.core.test_properties import CFG, LINES, SETTINGS


def _by_person(outcomes) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = defaultdict(list)
    for o in outcomes:
        out[o.person_id].append(OUTCOME_ENCODER.encode(o))
    return dict(out)


def _pipeline(lines: list[bytes], rnd: random.Random, redeliver: float = 0.0):
    """Journal entries in order; claims answered after a random delay; random redelivery."""
    claims = Claims(CFG.reservation_budget)
    records: dict[str, object] = {}
    journal: list = [
        EventEntry(topic="mynapoint.links", partition=0, offset=i, value=line)
        for i, line in enumerate(lines)
    ]
    published: list = []
    first_seen: dict[bytes, bytes] = {}
    i = 0
    while i < len(journal):
        entry = journal[i]
        person = (
            EVENT_DECODER.decode(entry.value).person_id if type(entry) is EventEntry
            else entry.person_id
        )
        for attempt in range(2 if rnd.random() < redeliver else 1):
            folded = fold(records.get(person), entry, CFG)
            records[person] = folded.record
            if attempt == 0 and not folded.repeat:
                published.extend(folded.outcomes)
            for o in folded.outcomes:
                enc = OUTCOME_ENCODER.encode(o)
                assert first_seen.setdefault(o.outcome_id.encode(), enc) == enc
            if attempt == 1:
                assert folded.repeat
            for req in folded.claims if attempt == 0 else ():
                answer = claims.answer(req.kind, req.key, req.person_id)
                reply = AnswerEntry(claim_kind=req.kind, claim_key=req.key,
                                    person_id=req.person_id, event_id=req.event_id,
                                    granted=answer.granted, holder=answer.holder)
                at = rnd.randint(i + 1, len(journal))
                journal.insert(at, reply)
        i += 1
    return published


@SETTINGS
@given(LINES, st.randoms(use_true_random=False))
def test_journal_fold_equals_simulate_per_person(lines, rnd):
    expected = _by_person(o for batch in run(lines, CFG) for o in batch)
    got = _by_person(_pipeline(lines, rnd))
    assert got.keys() == expected.keys()
    for person in expected:
        # Cross-person answers may interleave differently; the per-person decisions for people
        # that never contend for an account or the budget are identical.
        assert [msgspec.json.decode(x)["event_id"] for x in got[person]] == [
            msgspec.json.decode(x)["event_id"] for x in expected[person]
        ]


@SETTINGS
@given(LINES, st.randoms(use_true_random=False))
def test_redelivered_entries_change_nothing(lines, rnd):
    once = _pipeline(lines, random.Random(rnd.random()), redeliver=0.0)
    twice = _pipeline(lines, random.Random(rnd.random()), redeliver=0.5)
    assert _by_person(once).keys() == _by_person(twice).keys()
    assert sorted(o.outcome_id for o in once) == sorted(o.outcome_id for o in twice)


def _line(event_id: str, person: str, kind: str, at: str, **extra) -> bytes:
    return msgspec.json.encode({"event_id": event_id, "type": kind, "person_id": person,
                                "occurred_at": at, **extra})


SETUP = [
    _line("c", "p1", "card.issued", "2020-08-01T09:00:00+09:00", card_applied_on="2020-07-01",
          birth_date="1980-01-01", certificate_serial="C",
          certificate_expires_at="2030-01-01T00:00:00+09:00"),
    _line("m", "p1", "mykey.reserved", "2020-08-02T09:00:00+09:00", mykey_id="ABCD1234"),
    _line("l", "p1", "service.linked", "2020-08-03T09:00:00+09:00", campaign="phase1",
          service_id="demo-pay", service_account="a1"),
    _line("p", "p1", "payment.recorded", "2020-09-03T09:00:00+09:00", service_id="demo-pay",
          service_account="a1", transaction_id="t1", method="charge", amount_yen=4000),
]


NO_BUDGET = build_config({})


def test_events_queue_behind_a_claim_and_drain_in_order():
    rec = None
    outcomes = []
    for i, line in enumerate(SETUP):
        folded = fold(rec, EventEntry(topic="t", partition=0, offset=i, value=line), NO_BUDGET)
        rec = folded.record
        outcomes += folded.outcomes
        if i == 2:
            assert [c.kind for c in folded.claims] == ["account"]
            assert folded.outcomes == []
    assert rec.waiting is not None and len(rec.queue) == 1  # the payment waits behind the link
    answer = AnswerEntry(claim_kind="account", claim_key="demo-pay\x00a1", person_id="p1",
                         event_id="l", granted=True, holder="p1")
    folded = fold(rec, answer, NO_BUDGET)
    kinds = [(type(o).__name__, o.event_id) for o in folded.outcomes]
    assert kinds == [("Decision", "l"), ("Decision", "p"), ("Grant", "p")]
    assert folded.record.waiting is None and folded.record.queue == ()
    again = fold(folded.record, answer, NO_BUDGET)  # a repeated answer: the same outcomes, nothing new
    assert again.repeat and again.record is folded.record
    assert [OUTCOME_ENCODER.encode(o) for o in again.outcomes] == [
        OUTCOME_ENCODER.encode(o) for o in folded.outcomes
    ]


def test_a_redelivered_waiting_request_asks_its_claim_again():
    rec = None
    for i, line in enumerate(SETUP[:3]):
        rec = fold(rec, EventEntry(topic="t", partition=0, offset=i, value=line), NO_BUDGET).record
    again = fold(rec, EventEntry(topic="t", partition=0, offset=2, value=SETUP[2]), NO_BUDGET)
    assert again.repeat and [c.event_id for c in again.claims] == ["l"]


def test_a_redelivered_answer_asks_the_next_waiting_claim_again():
    # The answer to the first link drains a second link, whose claim goes out; the worker dies
    # before that claim is flushed and the answer comes again: the second claim must be re-sent.
    second = _line("l2", "p1", "service.linked", "2022-07-01T09:00:00+09:00",
                   campaign="phase2_insurance", service_id="demo-pay", service_account="a1")
    register = _line("r", "p1", "insurance.registered", "2022-06-30T09:00:00+09:00")
    rec = None
    for i, line in enumerate(SETUP[:3] + [register, second]):
        rec = fold(rec, EventEntry(topic="t", partition=0, offset=i, value=line),
                   NO_BUDGET).record
    answer = AnswerEntry(claim_kind="account", claim_key="demo-pay\x00a1", person_id="p1",
                         event_id="l", granted=True, holder="p1")
    drained = fold(rec, answer, NO_BUDGET)
    assert [c.event_id for c in drained.claims] == ["l2"]
    again = fold(drained.record, answer, NO_BUDGET)
    assert again.repeat and [c.event_id for c in again.claims] == ["l2"]


def test_recent_memory_is_bounded():
    rec = None
    for i in range(RECENT + 10):
        line = _line(f"s{i}", "p9", "service.preregistered", "2020-08-01T09:00:00+09:00",
                     service_id="demo-pay", service_account=f"a{i}")
        rec = fold(rec, EventEntry(topic="t", partition=0, offset=i, value=line), NO_BUDGET).record
    assert len(rec.recent) == RECENT
