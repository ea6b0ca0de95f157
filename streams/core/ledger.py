"""The ledger's fold over journal entries: effectively-once on top of at-least-once delivery.

Pure like the rules: the live ledger agent, replay and the tests all call `fold`. What it adds to
`streams.core.rules`:

- Redelivery. Kafka (and Faust, and a crashed worker) may hand the same journal entry over again,
  and intake may journal the same input record twice. Each input record is known by its source
  (topic, partition, offset); per person the ledger remembers the last offset seen from each source
  partition, so a repeat changes nothing. Its outcomes are re-emitted from a short memory of recent
  outcomes: exact repeats (same ids, same bytes) that consumers drop, and the cure for outcomes
  lost when a worker died between writing its state and flushing its sends.
- Cross-person claims. When `apply` returns a claim, the request waits in the record, the claim
  goes out, and the person's later events queue behind it until the answer comes back through the
  journal; then `complete` decides and the queue drains in order. The per-person order of
  decisions is therefore exactly the journal order, as in `simulate`.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from schemas.codec import OUTCOME_DECODER, OUTCOME_ENCODER, decode_event_fast
from schemas.journal import (
    JOURNAL_DECODER,
    JOURNAL_ENCODER,
    AnswerEntry,
    ClaimRequest,
    EventEntry,
    JournalEntry,
)
from schemas.outcomes import Decision, Outcome
from streams.core.config import RulesConfig
from streams.core.rules import Claim, apply, complete
from streams.core.state import PersonState

LEDGER_VERSION = 1
#: How many entries' outcomes a person's record remembers for re-emission. A crash can only lose
#: the sends of entries whose offsets were not yet committed, a handful per person.
RECENT = 32


class Waiting(msgspec.Struct, frozen=True, array_like=True):
    """The request whose decision waits for a claim's answer."""

    claim_kind: str
    claim_key: str
    event_id: str
    source_id: str
    entry: bytes  # the encoded EventEntry


class LedgerRecord(msgspec.Struct, frozen=True, array_like=True):
    v: int = LEDGER_VERSION
    person: PersonState | None = None
    # "topic/partition" -> the last offset folded from that source partition.
    offsets: dict[str, int] = {}
    waiting: Waiting | None = None
    queue: tuple[bytes, ...] = ()
    # (entry id, outcomes as JSON lines), oldest first.
    recent: tuple[tuple[str, bytes], ...] = ()


EMPTY_RECORD = LedgerRecord()
RECORD_ENCODER = msgspec.msgpack.Encoder()
RECORD_DECODER = msgspec.msgpack.Decoder(LedgerRecord)


class Folded(NamedTuple):
    record: LedgerRecord
    outcomes: list[Outcome]
    claims: list[ClaimRequest]
    # True when the outcomes are repeats of ones already produced for this entry.
    repeat: bool = False


def _claim_request(claim: Claim) -> ClaimRequest:
    return ClaimRequest(
        kind=claim.kind, key=claim.key, person_id=claim.person_id, event_id=claim.event_id
    )


def _remember(rec_recent: tuple[tuple[str, bytes], ...], entry_id: str, outcomes: list[Outcome]):
    if not outcomes:
        return rec_recent
    recent = rec_recent + ((entry_id, OUTCOME_ENCODER.encode_lines(outcomes)),)
    return recent[-RECENT:]


def _recalled(rec: LedgerRecord, entry_id: str) -> list[Outcome]:
    for known_id, lines in reversed(rec.recent):
        if known_id == entry_id:
            return list(OUTCOME_DECODER.decode_lines(lines))
    return []


def mark_late(outcomes: list[Outcome]) -> list[Outcome]:
    # A late decision is a different statement from the same decision made in order (a retry of
    # an old event can be both), so it gets its own id.
    return [
        msgspec.structs.replace(o, late=True, outcome_id=o.outcome_id + "-late")  # type: ignore[union-attr]
        if type(o) is Decision else o
        for o in outcomes
    ]


def _decide(
    person: PersonState | None, entry: EventEntry, encoded: bytes, cfg: RulesConfig
) -> tuple[PersonState | None, list[Outcome], Waiting | None, Claim | None]:
    ev = decode_event_fast(entry.value)
    step = apply(person, ev, cfg)
    if step.claim is not None:
        c = step.claim
        return person, [], Waiting(c.kind, c.key, c.event_id, entry.source_id, encoded), c
    outcomes = mark_late(step.outcomes) if entry.late else step.outcomes
    return step.state, outcomes, None, None


def _drain(
    person: PersonState | None, queue: tuple[bytes, ...], cfg: RulesConfig
) -> tuple[PersonState | None, list[Outcome], Waiting | None, tuple[bytes, ...], list[Claim]]:
    outcomes: list[Outcome] = []
    for i, encoded in enumerate(queue):
        entry = JOURNAL_DECODER.decode(encoded)
        assert type(entry) is EventEntry
        person, outs, waiting, claim = _decide(person, entry, encoded, cfg)
        outcomes.extend(outs)
        if waiting is not None:
            assert claim is not None
            return person, outcomes, waiting, queue[i + 1 :], [claim]
    return person, outcomes, None, (), []


def fold(record: LedgerRecord | None, entry: JournalEntry, cfg: RulesConfig) -> Folded:
    rec = EMPTY_RECORD if record is None else record
    if type(entry) is EventEntry:
        return _fold_event(rec, entry, cfg)
    assert type(entry) is AnswerEntry
    return _fold_answer(rec, entry, cfg)


def _fold_event(rec: LedgerRecord, entry: EventEntry, cfg: RulesConfig) -> Folded:
    source = f"{entry.topic}/{entry.partition}"
    if rec.offsets.get(source, -1) >= entry.offset:
        return Folded(rec, _recalled(rec, entry.source_id), _ask_again(rec, entry), True)
    offsets = {**rec.offsets, source: entry.offset}
    encoded = JOURNAL_ENCODER.encode(entry)
    if rec.waiting is not None:
        return Folded(
            msgspec.structs.replace(rec, offsets=offsets, queue=rec.queue + (encoded,)), [], []
        )
    person, outcomes, waiting, claim = _decide(rec.person, entry, encoded, cfg)
    new = msgspec.structs.replace(
        rec,
        person=person,
        offsets=offsets,
        waiting=waiting,
        recent=_remember(rec.recent, entry.source_id, outcomes),
    )
    return Folded(new, outcomes, [_claim_request(claim)] if claim is not None else [])


def _ask_again(rec: LedgerRecord, entry: JournalEntry) -> list[ClaimRequest]:
    """On any redelivery, the waiting request's claim is sent again.

    A redelivery means a worker died before committing; the claim it sent (while deciding the
    waiting request, or while draining the queue behind an answer) may have died with it. Claims
    are idempotent, so asking again is harmless, and without it the person would wait forever.
    """
    w = rec.waiting
    if w is None:
        return []
    person_id = (
        decode_event_fast(entry.value).person_id if type(entry) is EventEntry
        else entry.person_id  # type: ignore[union-attr]
    )
    return [ClaimRequest(kind=w.claim_kind, key=w.claim_key, person_id=person_id,
                         event_id=w.event_id)]


def _fold_answer(rec: LedgerRecord, entry: AnswerEntry, cfg: RulesConfig) -> Folded:
    w = rec.waiting
    if w is None or w.event_id != entry.event_id or w.claim_kind != entry.claim_kind:
        # A repeated answer, for a request already decided.
        return Folded(rec, _recalled(rec, entry.source_id), _ask_again(rec, entry), True)
    waiting_entry = JOURNAL_DECODER.decode(w.entry)
    assert type(waiting_entry) is EventEntry
    ev = decode_event_fast(waiting_entry.value)
    claim = Claim(w.claim_kind, w.claim_key, entry.person_id, w.event_id)
    step = complete(rec.person, ev, claim, entry.granted, entry.holder, cfg)
    outcomes = mark_late(step.outcomes) if waiting_entry.late else list(step.outcomes)
    person, drained, waiting, queue, claims = _drain(step.state, rec.queue, cfg)
    outcomes.extend(drained)
    new = msgspec.structs.replace(
        rec,
        person=person,
        waiting=waiting,
        queue=queue,
        recent=_remember(rec.recent, entry.source_id, outcomes),
    )
    return Folded(new, outcomes, [_claim_request(c) for c in claims])
