"""The ledger step: fold each journal entry into the person's record (streams/core/ledger.py),
keep the person's timeline (streams/core/timeline.py), ask for claims, publish the outcomes."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection

from schemas import topics
from schemas.codec import (
    DECODE_ERRORS,
    INTERNAL_ERROR,
    UNREADABLE_JOURNAL_ENTRY,
    UNREADABLE_STATE,
    BadInput,
    mask_my_numbers,
)
from schemas.journal import JOURNAL_ENCODER, JournalEntry
from streams.core.config import RulesConfig
from streams.core.ledger import (
    RECORD_ENCODER,
    UNKNOWN_AT,
    Folded,
    LedgerRecord,
    fold,
    remembered_lines,
)
from streams.core.timeline import writes_after_fold as timeline_writes
from streams.core.versions import VersionError, decode_ledger_record, journal_entries
from streams.pipeline import metrics
from streams.pipeline.outputs import Outputs
from streams.pipeline.runtime import Store, Where

_UNREADABLE = (VersionError, *DECODE_ERRORS)


def _fields(key: bytes) -> dict[str, str]:
    """What a dead letter of the person's entry says of them: the person id, masked."""
    return {"person_id": mask_my_numbers(key.decode("utf-8", "replace"))}


def journal_record(key: bytes | None, value: bytes | None) -> list[tuple[bytes, JournalEntry]]:
    """The entries of one journal record, each with its person's key
    (`streams.core.versions.journal_entries`: read through it, so values stored by an earlier
    version are upgraded). One that cannot be read raises `BadInput`
    (`unreadable_journal_entry`)."""
    try:
        if value is None:
            raise VersionError("the record has no value")
        if not key:
            raise VersionError("the record has no key (the person_id)")
        return journal_entries(key, value)
    except _UNREADABLE as exc:
        raise BadInput(
            UNREADABLE_JOURNAL_ENTRY,
            f"not a journal entry this worker can read ({exc}); only mynapoint workers may write "
            f"to {topics.JOURNAL}: find the other producer, or upgrade this worker if a newer "
            "one wrote it",
        ) from None


def fold_entry(key: bytes, entry: JournalEntry, read: Callable[[bytes], bytes | None],
               rules: RulesConfig, at: int = UNKNOWN_AT,
               committed: int = 0) -> tuple[LedgerRecord | None, Folded]:
    """The person's stored record (`read(key)`) and the fold of one journal entry into it.

    `at` is the offset of the journal record the entry is in, and `committed` its partition's
    committed offset: the record then forgets the outcomes of entries below it (see
    `streams.core.ledger.fold`).

    The record is read through `streams.core.versions`, so a value stored by an earlier version
    is upgraded on read. What cannot be read or decided raises `BadInput` with the reason to
    dead-letter it under: no journal entry stops the ledger.
    """
    record_value = read(key)
    try:
        record = decode_ledger_record(record_value) if record_value is not None else None
    except _UNREADABLE as exc:
        raise BadInput(
            UNREADABLE_STATE,
            f"the person's stored record cannot be read ({exc}); if a newer worker wrote it, run "
            "that version; the person's journal entries are dead-lettered until then",
            _fields(key),
        ) from None
    try:
        return record, fold(record, entry, rules, at=at, committed=committed)
    except Exception as exc:
        # A bug in the rules or the fold: reported with the record it failed on, which can be
        # replayed from its offset once fixed, instead of stopping every other person.
        raise BadInput(
            INTERNAL_ERROR,
            f"deciding this journal entry failed ({type(exc).__name__}: {exc}); this is a bug: "
            "report it with this dead letter; the entry was not applied",
            _fields(key),
        ) from exc


class ClaimWaits:
    """The persons whose decision waits for a claim's answer, as this worker's ledger last folded
    them, and since when: what the `mynapoint_claim_waits` gauges report (streams/pipeline/metrics.py).

    A person counts from the fold that leaves their record waiting to the fold that ends the wait
    (the answer's, normally milliseconds later); a wait for another request starts the clock
    again. Only the journal partitions this worker holds count: `revoked` forgets the others, and
    their new owner counts a waiting person from its next fold of them. A person who was already
    waiting when this worker took the partition, and has no new journal entry, is not counted:
    `mynapoint reask` lists every waiting request from the changelog (docs/RUNBOOK.md).

    Read by the metrics scrape from its own thread: `count` and `oldest` only read, in single
    operations on the dict.
    """

    __slots__ = ("_since",)

    def __init__(self) -> None:
        #: person key -> (journal partition, the waiting request's event id, monotonic seconds).
        self._since: dict[bytes, tuple[int, str, float]] = {}

    def waiting(self, key: bytes, partition: int, event_id: str, now: float) -> None:
        current = self._since.get(key)
        if current is None or current[1] != event_id:
            self._since[key] = (partition, event_id, now)

    def done(self, key: bytes) -> None:
        self._since.pop(key, None)

    def revoked(self, partitions: Collection[int]) -> None:
        for key, (partition, _, _) in list(self._since.items()):
            if partition in partitions:
                del self._since[key]

    def count(self) -> int:
        return len(self._since)

    def oldest(self, now: float) -> float:
        """Seconds the longest wait has lasted at `now`; 0 when nobody waits."""
        since = [s for _, _, s in list(self._since.values())]
        return max(0.0, now - min(since)) if since else 0.0


class Ledger:
    """Handles the journal: one call per journal record, in the partition's order."""

    __slots__ = ("rules", "persons", "timeline", "out", "waits", "scope")

    def __init__(self, rules: RulesConfig, persons: Store, timeline: Store, out: Outputs,
                 scope: Callable[[bytes], None] | None = None) -> None:
        self.rules = rules
        #: Each person's `LedgerRecord`.
        self.persons = persons
        #: Each person's published outcomes, as JSON lines in chunks, for the status API.
        self.timeline = timeline
        self.out = out
        #: Who waits for a claim's answer, for the gauges; `revoked` when partitions go.
        self.waits = ClaimWaits()
        #: For an engine whose stores are scoped to the record's key (Quix Streams): called with
        #: each entry's person before a batch's entry is folded, to scope them to that person.
        self.scope = scope

    def revoked(self, partitions: Collection[int]) -> None:
        """The engine took these journal partitions away."""
        self.waits.revoked(partitions)

    async def on_entry(self, key: bytes | None, value: bytes | None, where: Where, committed: int,
                       timestamp: float | None = None) -> None:
        """Folds one journal record (`where`, with its `key` and `value`; `committed` is its
        partition's committed offset, below which everything was sent; `timestamp` the record's,
        in seconds, for the end-to-end latency): its entries in their order, each into its
        person's record."""
        started = time.perf_counter()
        try:
            entries = journal_record(key, value)
        except BadInput as exc:
            await self.out.refuse(exc, where, value)
            return
        scope = self.scope if len(entries) > 1 else None
        for person, entry in entries:
            if scope is not None:
                scope(person)
            await self._fold(person, entry, where, committed)
        metrics.observe_latency(started, timestamp)

    async def _fold(self, key: bytes, entry: JournalEntry, where: Where, committed: int) -> None:
        out = self.out
        try:
            record, folded = fold_entry(key, entry, self.persons.read, self.rules,
                                        at=where.offset, committed=committed)
        except BadInput as exc:
            await out.refuse(exc, where, None)
            return
        if folded.record is not record:
            self.persons.write(key, RECORD_ENCODER.encode(folded.record))
        if folded.outcomes:
            timeline = self.timeline
            record_now = folded.record
            for tkey, tvalue in timeline_writes(
                    key, timeline.read(key),
                    lambda upto: remembered_lines(record_now, upto)):
                timeline.write(tkey, tvalue)
        await self.persons.changelog()
        await self.timeline.changelog()
        waiting = folded.record.waiting
        if waiting is None:
            self.waits.done(key)
        else:
            self.waits.waiting(key, where.partition, waiting.event_id, time.monotonic())
        for req in folded.claims:
            await out.send(topics.CLAIMS, req.key.encode(), JOURNAL_ENCODER.encode(req))
        await out.publish(key, folded.outcomes)
        if folded.repeat:
            metrics.REPEATS.inc()
