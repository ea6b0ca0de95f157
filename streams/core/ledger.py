"""The ledger's fold over journal entries: effectively-once on top of at-least-once delivery.

Pure like the rules: the live ledger agent, replay and the tests all call `fold`. What it adds to
`streams.core.rules`:

- Redelivery. Kafka (and Faust, and a crashed worker) may hand the same journal entry over again,
  and intake may journal the same input record twice. Each input record is known by its source
  (topic, partition, offset); per person the ledger remembers the last offset seen from each source
  partition, so a repeat changes nothing. Its outcomes are re-emitted from a short memory of recent
  outcomes: exact repeats (same ids, same bytes) that consumers drop, and the cure for outcomes
  lost when a worker died between writing its state and flushing its sends.
- The memory covers the uncommitted tail only. A worker flushes every send (outcomes, table
  writes) before it commits a journal offset, so an entry below the journal partition's committed
  offset can lose nothing in a crash: its outcomes are dropped at the person's next fold (the
  caller says where the entry sits, `at`, and what is committed, `committed`). The newest such
  entry stays as an anchor with no id and no outcomes, standing for "everything up to here was
  published" (`streams.core.timeline.missing`). Without the two numbers (replay, tests) the memory
  keeps the last `RECENT` entries. Either way it never holds more than `RECENT`.
- The memory is compact: each remembered entry's outcomes are packed as msgpack rows of their
  field values (`pack`), the person id and rules version written once per record (`packed_for`)
  instead of once per outcome; unpacked, they are the very same outcomes, so a re-emitted outcome
  is byte for byte the one first published. `remembered_lines` gives them as JSON lines, with each
  entry's journal offset, for the timeline.
- Cross-person claims. When `apply` returns a claim, the request waits in the record, the claim
  goes out, and the person's later events queue behind it until the answer comes back through the
  journal; then `complete` decides and the queue drains in order. The per-person order of
  decisions is therefore exactly the journal order, as in `simulate`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import msgspec

from schemas.codec import OUTCOME_ENCODER, decode_event_fast
from schemas.journal import (
    JOURNAL_DECODER,
    JOURNAL_ENCODER,
    AnswerEntry,
    ClaimRequest,
    EventEntry,
    JournalEntry,
)
from schemas.outcomes import Alert, Decision, Grant, Outcome
from streams.core.config import RulesConfig
from streams.core.rules import Claim, apply, complete
from streams.core.state import PersonState

LEDGER_VERSION = 2
#: At most how many entries' outcomes a person's record remembers for re-emission. A crash can only
#: lose the sends of entries whose offsets were not yet committed, a handful per person; entries
#: below the committed offset are forgotten before this bound is reached.
RECENT = 32
#: `at` of an entry whose journal offset is not known (replay, tests, records of layout v1).
UNKNOWN_AT = -1


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
    # (entry id, its outcomes packed (`pack`), the entry's offset in its journal partition or
    # UNKNOWN_AT), oldest first: the entries above the committed offset, after the anchor
    # ("", b"", offset) of the newest one below it.
    recent: tuple[tuple[str, bytes, int], ...] = ()
    # The person id and rules version that the packed outcomes leave out (`pack`).
    packed_for: tuple[str, str] = ("", "")


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


Remembered = tuple[tuple[str, bytes, int], ...]

# --- the packed form of remembered outcomes (part of the stored layout v2) ----------------------
#: Row kind codes. Frozen with the layout: a new kind is appended, never renumbered; a change of
#: an outcome's fields other than a new last field with a default needs a new ledger version.
_KINDS: tuple[type[Outcome], ...] = (Decision, Grant, Alert)
_KIND_CODE = {cls: i for i, cls in enumerate(_KINDS)}
_SAME_PERSON = msgspec.msgpack.Ext(1, b"")
_SAME_VERSION = msgspec.msgpack.Ext(2, b"")
_SAME_EVENT = msgspec.msgpack.Ext(3, b"")
_Ext = msgspec.msgpack.Ext
_astuple = msgspec.structs.astuple
_PACK_ENCODER = msgspec.msgpack.Encoder()
_PACK_DECODER = msgspec.msgpack.Decoder()


def _positions(cls: type[Outcome]) -> tuple[int, int, int, int]:
    """Where a row of `cls` holds person_id, rules_version (-1: none), event_id, outcome_id."""
    names = cls.__struct_fields__
    return (1 + names.index("person_id"),
            1 + names.index("rules_version") if "rules_version" in names else -1,
            1 + names.index("event_id"), 1 + names.index("outcome_id"))


_POSITIONS = {cls: _positions(cls) for cls in _KINDS}
_ROW_POSITIONS = [_POSITIONS[cls] for cls in _KINDS]


def pack(outcomes: Sequence[Outcome], person_id: str, rules_version: str) -> bytes:
    """Outcomes as msgpack rows `[kind code, *field values]`, with references (msgpack ext types,
    3 to 5 bytes) for what repeats: ext 1 in place of a person id equal to `person_id`, ext 2 of a
    rules version equal to `rules_version`, and after the first row, ext 3 of an event id equal
    to the first row's, ext 4 (data: a suffix) of an outcome id that is the first row's followed
    by that suffix (a grant's `-g`, an alert's `-a`)."""
    rows: list[list[object]] = []
    event_id = outcome_id = ""
    for o in outcomes:
        cls = type(o)
        row: list[object] = [_KIND_CODE[cls], *_astuple(o)]
        p, v, e, i = _POSITIONS[cls]
        if row[p] == person_id:
            row[p] = _SAME_PERSON
        if v >= 0 and row[v] == rules_version:
            row[v] = _SAME_VERSION
        if rows:
            if row[e] == event_id:
                row[e] = _SAME_EVENT
            oid: str = row[i]  # type: ignore[assignment]
            if oid.startswith(outcome_id) and oid != outcome_id:
                row[i] = _Ext(4, oid[len(outcome_id):].encode())
        else:
            event_id, outcome_id = row[e], row[i]  # type: ignore[assignment]
        rows.append(row)
    return _PACK_ENCODER.encode(rows)


def unpack(packed: bytes, person_id: str, rules_version: str) -> list[Outcome]:
    """The outcomes `pack` was given, equal field for field (so also byte for byte as JSON)."""
    out: list[Outcome] = []
    event_id = outcome_id = ""
    for row in _PACK_DECODER.decode(packed):
        code = row[0]
        p, v, e, i = _ROW_POSITIONS[code]
        if type(row[p]) is _Ext:
            row[p] = person_id
        if v >= 0 and type(row[v]) is _Ext:
            row[v] = rules_version
        if out:
            if type(row[e]) is _Ext:
                row[e] = event_id
            if type(row[i]) is _Ext:
                row[i] = outcome_id + bytes(row[i].data).decode()
        else:
            event_id, outcome_id = row[e], row[i]
        out.append(_KINDS[code](*row[1:]))
    return out


def remembered_lines(record: LedgerRecord, upto: int = -1) -> list[tuple[str, bytes, int]]:
    """The record's memory as (entry id, outcomes as JSON lines, journal offset), oldest first,
    for the timeline (`streams.core.timeline.writes_after_fold`); the anchor is ("", b"", at).

    With `upto` >= 0 (a timeline head's: the offset of the newest entry it holds), the entries at
    or below it come with no lines: the timeline holds them, and `writes_after_fold` does not read
    them. Unpacking and encoding every remembered entry on each fold was about a quarter of the
    ledger step's time, for the one or two entries a head misses."""
    person_id, version = record.packed_for
    encode = OUTCOME_ENCODER.encode_lines
    return [(entry_id, encode(unpack(packed, person_id, version))
             if packed and (upto < 0 or at > upto) else b"", at)
            for entry_id, packed, at in record.recent]


def _remember(rec: LedgerRecord, entry_id: str, outcomes: list[Outcome], at: int,
              committed: int, cfg: RulesConfig) -> tuple[Remembered, tuple[str, str]]:
    recent = rec.recent
    packed_for = rec.packed_for
    if committed > 0:
        recent = forget_committed(recent, committed)
    if outcomes:
        if not any(packed for _, packed, _ in recent):
            # Nothing left packed for the old pair: pack for this person and configuration.
            packed_for = (outcomes[0].person_id, cfg.version)  # type: ignore[attr-defined]
        recent = (*recent, (entry_id, pack(outcomes, *packed_for), at))
    return recent[-RECENT:], packed_for


def forget_committed(recent: Remembered, committed: int) -> Remembered:
    """`recent` without the lines of entries below the journal's `committed` offset (all sent):
    the newest of them stays as the anchor ("", b"", its offset), the older ones go."""
    newest = -1
    for i in range(len(recent) - 1, -1, -1):
        if 0 <= recent[i][2] < committed:
            newest = i
            break
    if newest < 0 or (newest == 0 and recent[0][1] == b"" and recent[0][0] == ""):
        return recent
    return (("", b"", recent[newest][2]), *recent[newest + 1:])


def _recalled(rec: LedgerRecord, entry_id: str) -> list[Outcome]:
    for known_id, packed, _at in reversed(rec.recent):
        if known_id == entry_id:
            return unpack(packed, *rec.packed_for)
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
    person: PersonState | None, entry: EventEntry, encoded: bytes | None, cfg: RulesConfig
) -> tuple[PersonState | None, list[Outcome], Waiting | None, Claim | None]:
    """`encoded` is the entry as JOURNAL_ENCODER encodes it, or None to encode it here, only when
    it is needed (a request that waits for a claim keeps it)."""
    ev = decode_event_fast(entry.value)
    step = apply(person, ev, cfg)
    if step.claim is not None:
        c = step.claim
        if encoded is None:
            encoded = JOURNAL_ENCODER.encode(entry)
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


def fold(record: LedgerRecord | None, entry: JournalEntry, cfg: RulesConfig, *,
         at: int = UNKNOWN_AT, committed: int = 0) -> Folded:
    """Folds one journal entry into the person's record.

    `at` is the entry's offset in its journal partition and `committed` that partition's committed
    offset (everything below it was sent): given both, the record forgets the outcomes that no
    crash can lose any more. Left out, the memory keeps the last `RECENT` entries.
    """
    rec = EMPTY_RECORD if record is None else record
    if type(entry) is EventEntry:
        return _fold_event(rec, entry, cfg, at, committed)
    assert type(entry) is AnswerEntry
    return _fold_answer(rec, entry, cfg, at, committed)


def _fold_event(rec: LedgerRecord, entry: EventEntry, cfg: RulesConfig, at: int,
                committed: int) -> Folded:
    source = f"{entry.topic}/{entry.partition}"
    if rec.offsets.get(source, -1) >= entry.offset:
        return Folded(rec, _recalled(rec, entry.source_id), _ask_again(rec, entry), True)
    offsets = {**rec.offsets, source: entry.offset}
    if rec.waiting is not None:
        encoded = JOURNAL_ENCODER.encode(entry)
        return Folded(
            msgspec.structs.replace(rec, offsets=offsets, queue=rec.queue + (encoded,)), [], []
        )
    person, outcomes, waiting, claim = _decide(rec.person, entry, None, cfg)
    recent, packed_for = _remember(rec, entry.source_id, outcomes, at, committed, cfg)
    new = LedgerRecord(LEDGER_VERSION, person, offsets, waiting, rec.queue, recent, packed_for)
    return Folded(new, outcomes, [_claim_request(claim)] if claim is not None else [])


def _ask_again(rec: LedgerRecord, entry: JournalEntry) -> list[ClaimRequest]:
    """On any redelivery, the waiting request's claim is sent again.

    A redelivery means a worker died before committing; the claim it sent (while deciding the
    waiting request, or while draining the queue behind an answer) may have died with it. Claims
    are idempotent, so asking again is harmless, and without it the person would wait forever.
    """
    if rec.waiting is None:
        return []
    person_id = (
        decode_event_fast(entry.value).person_id if type(entry) is EventEntry
        else entry.person_id  # type: ignore[union-attr]
    )
    return [waiting_request(person_id, rec)]


def waiting_request(person_id: str, record: LedgerRecord) -> ClaimRequest:
    """The claim request that the record's waiting request needs answered, as first sent: what a
    redelivery asks again, and what `mynapoint reask` sends for a request that waits too long."""
    w = record.waiting
    assert w is not None
    return ClaimRequest(kind=w.claim_kind, key=w.claim_key, person_id=person_id,
                        event_id=w.event_id)


def _fold_answer(rec: LedgerRecord, entry: AnswerEntry, cfg: RulesConfig, at: int,
                 committed: int) -> Folded:
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
    recent, packed_for = _remember(rec, entry.source_id, outcomes, at, committed, cfg)
    new = LedgerRecord(LEDGER_VERSION, person, rec.offsets, waiting, queue, recent, packed_for)
    return Folded(new, outcomes, [_claim_request(c) for c in claims])


def with_journal_offsets(record: LedgerRecord, move: Callable[[int], int]) -> LedgerRecord:
    """The record with the journal offsets of its memory (`recent`'s third element) moved:
    `mynapoint rescale` rewrites the journal at new offsets, each person's entries in their order,
    so what is below the committed offset stays below it. UNKNOWN_AT stays unknown."""
    if not any(at >= 0 for _, _, at in record.recent):
        return record
    return msgspec.structs.replace(record, recent=tuple(
        (entry_id, packed, move(at) if at >= 0 else at) for entry_id, packed, at in record.recent))
