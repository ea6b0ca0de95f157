"""The intake step: decode and validate each input record, then release it to the journal in
event-time order (streams/core/align.py). Bad records become dead letters.

Nothing is acknowledged to the engine before it reached the journal (or the dead letters), and
acknowledgements go in offset order per partition: the engine commits no offset past a record
still held for alignment, so a crash or a rebalance loses none.

What alignment holds is bounded per input partition, as Kafka Streams bounds it with
`buffered.records.per.partition`: a partition holding `max_held` records is paused (the engine's
consumer stops fetching it, keeping its place) until it holds half as many. Without the bound a
worker catching up on a backlog held a third to two thirds of it, because the consumer hands over
one input topic after another. The bound cannot stall alignment: the record that goes out next
waits only for partitions holding nothing, and a partition holding nothing is never paused.

What one release lets go is journaled in batches (`schemas.journal.JournalBatch`), one record per
journal partition and up to `JOURNAL_BATCH_MAX` entries, a new one whenever a person would be in
it twice: a journal record costs the worker far more than an entry in it (docs/BENCHMARKS.md,
issue 13). Each entry's journal partition is its person's (`partition_for_key`), so a batch holds
only persons of the partition its record is sent to, whatever the input topics' partition counts.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from schemas import topics
from schemas.codec import BAD_KEY, INTERNAL_ERROR, MISSING_VALUE, BadInput, decode_event
from schemas.events import Event
from schemas.journal import (
    JOURNAL_BATCH_BYTES,
    JOURNAL_BATCH_MAX,
    JOURNAL_ENCODER,
    EventEntry,
    JournalBatch,
    JournalEntry,
)
from streams.core.align import Aligner, Held, InOrder
from streams.pipeline import metrics
from streams.pipeline.outputs import Outputs
from streams.pipeline.rereads import STARVED_AFTER, Rereads
from streams.pipeline.runtime import At, IntakeSource

#: How often the engine should call `Intake.release` when no record arrives (seconds): held
#: records are re-examined then, so what waited for silent sources goes out.
ALIGN_TICK = 0.1
#: The engines' `release_every`: an input partition is released once it received this many
#: records since its last release (and by the `ALIGN_TICK` timer in any case). On a backlog one
#: release then lets go some tens of records, journaled in a few records instead of one each
#: (records arrive faster than the timer); live, a record waits at most `ALIGN_TICK` more.
RELEASE_EVERY = 64
def validate_record(key: bytes | None, value: bytes | None) -> Event:
    """The event of one input record, or `BadInput` saying what is wrong with it."""
    if value is None:
        raise BadInput(MISSING_VALUE, "the record has no value: send the JSON event as the value")
    ev = decode_event(value)
    if key is None:
        raise BadInput(
            BAD_KEY,
            "the record has no key: key every record by its person_id so a person's events "
            "stay in one partition",
            {"event_id": ev.event_id, "person_id": ev.person_id},
        )
    if key != ev.person_id.encode():
        raise BadInput(
            BAD_KEY,
            "the record key is not the event's person_id: key every record by its person_id",
            {"event_id": ev.event_id, "person_id": ev.person_id},
        )
    return ev


def checked_record(key: bytes | None, value: bytes | None) -> Event:
    """`validate_record`, with any other failure (a bug) turned into an `internal_error`.

    An engine's handler that raises loses the record it was on (Faust restarts the agent); every
    input record must end as an event or a dead letter instead.
    """
    try:
        return validate_record(key, value)
    except BadInput:
        raise
    except Exception as bug:
        raise BadInput(INTERNAL_ERROR, f"validating this record failed ({type(bug).__name__}: "
                       f"{bug}); this is a bug: report it with this dead letter") from bug


class _Batch:
    """Entries of one journal record being gathered: their persons' keys (also as a set), and
    the input records' acknowledgement entries."""

    __slots__ = ("keys", "persons", "entries", "acks", "size")

    def __init__(self) -> None:
        self.keys: list[bytes] = []
        self.persons: set[bytes] = set()
        self.entries: list[JournalEntry] = []
        self.acks: list[Any] = []
        self.size = 0

    def full(self, adding: int, most: int) -> bool:
        return (len(self.keys) >= most
                or (self.size + adding > JOURNAL_BATCH_BYTES and bool(self.keys)))

    def add(self, key: bytes, entry: EventEntry, ack: Any, size: int) -> None:
        self.keys.append(key)
        self.persons.add(key)
        self.entries.append(entry)
        self.acks.append(ack)
        self.size += size


class Intake:
    """Handles the input topics, for every partition the engine assigned to this worker.

    The engine calls `on_record` for each input record, `release` every `ALIGN_TICK`, `reseek`
    every `RESEEK_EVERY`, and `revoked` when it loses partitions, all on one event loop (from
    different tasks: an agent and its timers).
    """

    def __init__(self, source: IntakeSource, out: Outputs, idle_wait: float,
                 max_held: int | None = None, journal_partitions: int | None = None,
                 release_every: int = 1, batch_max: int = JOURNAL_BATCH_MAX) -> None:
        """`max_held`: the records one input partition may hold before it is paused (None: no
        bound; none either where the engine cannot pause one partition, `source.pausable`).
        `journal_partitions`: the journal's partition count, to journal in batches of up to
        `batch_max` entries (None, or a `batch_max` of 1: one entry a record). `release_every`:
        the records an input partition receives between two releases of it by `on_record` (1: a
        release after each; `release` from the timer releases every partition whatever they
        received)."""
        self.source = source
        self.journal_partitions = journal_partitions if batch_max > 1 else None
        self._batch_max = min(batch_max, JOURNAL_BATCH_MAX)
        self._release_every = max(1, release_every)
        #: Records each input partition received since its last release.
        self._unreleased: dict[int, int] = {}
        self.out = out
        self.aligner = Aligner(topics.INPUT_TOPICS, idle_wait)
        # The bound on held records per input partition: paused at `_pause_at`, resumed at
        # `_resume_at` or fewer; and the partitions paused now.
        bound = max(1, max_held) if max_held is not None and source.pausable else None
        self._pause_at: float = float("inf") if bound is None else bound
        self._resume_at = 0 if bound is None else bound // 2
        self._paused: set[tuple[str, int]] = set()
        # Input records are acknowledged in offset order per partition, and not during a
        # rebalance (`_acknowledge`).
        self.in_order = InOrder()
        self._deferred: list[Any] = []
        # Records the consumer skipped are read again before anything after them is taken, and
        # sources it lost its place in are read again.
        self.rereads = Rereads(source)
        # The last value given to the held-records gauge (set again only when it changes).
        self._last_held = -1
        # One releaser at a time: a send can wait (a full producer buffer), and a release from
        # another task meanwhile would put its records in the journal among this one's.
        self._releasing = asyncio.Lock()

    async def on_record(self, topic: str, partition: int, offset: int, key: bytes | None,
                        value: bytes | None, token: Any) -> None:
        """One input record; `token` is what `IntakeSource.acknowledge` is given for it."""
        now = time.monotonic()
        if not await self.rereads.admit(topic, partition, offset, now):
            return  # after a hole: read again after it
        source = self.source
        metrics.labelled(metrics.EVENTS_IN, topic, "intake").inc()
        entry = self.in_order.track(topic, partition, token)
        try:
            ev = checked_record(key, value)
        except BadInput as exc:
            await self.out.refuse(exc, At(topic, partition, offset), value)
            self._acknowledge(entry)
            self.aligner.passed(topic, partition, offset, now)
            await self.release(partition)
            return
        metrics.labelled(metrics.EVENTS_BY_TYPE, topic, type(ev).__struct_config__.tag).inc()
        held = self.aligner.add(topic, partition, offset, ev.occurred_at.timestamp(),
                                (value, key, entry), now)
        if held >= self._pause_at and (topic, partition) not in self._paused:
            self._paused.add((topic, partition))
            source.pause(topic, partition)
            metrics.labelled(metrics.PAUSES, topic).inc()
            metrics.PAUSED.set(len(self._paused))
        if self._release_every > 1:
            arrived = self._unreleased.get(partition, 0) + 1
            if arrived < self._release_every:
                self._unreleased[partition] = arrived
                return
        await self.release(partition)

    async def release(self, partition: int | None = None) -> None:
        """Sends the journal every held record that alignment lets go, in event-time order (of
        one partition: the one a record just arrived on)."""
        async with self._releasing:
            if partition is None:
                self._unreleased.clear()
            else:
                self._unreleased.pop(partition, None)
            released = self.aligner.release(time.monotonic(), self.rereads.has_more, partition)
            if released:
                if self.journal_partitions is None:
                    await self._journal_one_by_one(released)
                else:
                    await self._journal_in_batches(released, self.journal_partitions)
            if self._deferred and not self.source.rebalancing():
                self._acknowledge_deferred()
            if released and self._paused:
                # Only a release lowers what a paused partition holds (a revoke resumes its own).
                self._resume_drained()
            held_now = self.aligner.held()
            if held_now != self._last_held:
                metrics.HELD.set(held_now)
                self._last_held = held_now

    async def _journal_one_by_one(self, released: list[Held]) -> None:
        send, encode = self.out.send, JOURNAL_ENCODER.encode
        for held in released:
            value, key, entry = held.item
            await send(topics.JOURNAL, key, encode(self._entry(held, value)))
            # Acknowledged only now: no input offset is committed past a record that has not
            # reached the journal, so a crash loses nothing that was still held.
            self._acknowledge(entry)

    async def _journal_in_batches(self, released: list[Held], partitions: int) -> None:
        """`released` in journal records of up to `batch_max` entries: per journal
        partition, in their order, a person at most once a record."""
        open_batches: dict[int, _Batch] = {}
        for held in released:
            value, key, entry = held.item
            p = topics.partition_for_key(key, partitions)
            batch = open_batches.get(p)
            if batch is not None and (key in batch.persons
                                      or batch.full(len(value), self._batch_max)):
                await self._send_batch(open_batches.pop(p))
                batch = None
            if batch is None:
                batch = open_batches[p] = _Batch()
            batch.add(key, self._entry(held, value), entry, len(value))
        for batch in open_batches.values():
            await self._send_batch(batch)

    async def _send_batch(self, batch: _Batch) -> None:
        entries = batch.entries
        if len(entries) == 1:
            value = JOURNAL_ENCODER.encode(entries[0])
        else:
            value = JOURNAL_ENCODER.encode(JournalBatch(persons=batch.keys, entries=entries))
        await self.out.send(topics.JOURNAL, batch.keys[0], value)
        for entry in batch.acks:
            # Acknowledged only now: no input offset is committed past a record that has not
            # reached the journal, so a crash loses nothing that was still held.
            self._acknowledge(entry)

    @staticmethod
    def _entry(held: Held, value: bytes) -> EventEntry:
        if held.late:
            metrics.labelled(metrics.LATE, held.topic).inc()
        return EventEntry(topic=held.topic, partition=held.partition, offset=held.offset,
                          value=value, late=held.late)

    def _resume_drained(self) -> None:
        """Resumes the paused partitions that hold `_resume_at` records or fewer now."""
        queued, resume_at = self.aligner.queued, self._resume_at
        drained = [source for source in self._paused if queued(*source) <= resume_at]
        if not drained:
            return
        now = time.monotonic()
        for topic, partition in drained:
            self._paused.discard((topic, partition))
            self.source.resume(topic, partition)
            # Its silence was ours: its next record must not restart the others' idle wait.
            self.aligner.heard(topic, partition, now)
        metrics.PAUSED.set(len(self._paused))

    def _acknowledge(self, entry: list[Any]) -> None:
        """Marks one input record finished (journaled or dead-lettered) and acknowledges, in
        offset order, what that completes.

        An engine commits what it was acknowledged: one record acknowledged ahead of an earlier,
        still-held one could commit past the held one (Faust commits the highest offset of the
        first run of consecutive acknowledged offsets, and lets a run start one past its
        committed offset, or anywhere while nothing is committed), and a crash or a rebalance
        would lose it. During a rebalance the engine may have forgotten the revoked partitions'
        bookkeeping, so an acknowledgement then would seed the next assignment's with a stray
        offset: those wait (the engine drops the ones whose assignment ended; the new owner
        reads them again from the committed offset).
        """
        self._deferred.extend(self.in_order.done(entry))
        if self._deferred and not self.source.rebalancing():
            self._acknowledge_deferred()

    def _acknowledge_deferred(self) -> None:
        acknowledge = self.source.acknowledge
        for token in self._deferred:
            acknowledge(token)
        self._deferred.clear()

    async def reseek(self, now: float | None = None) -> None:
        """Reads again where the consumer lost its place (streams/pipeline/rereads.py): the holes
        sought and not yet read, a source the broker has more of that delivered nothing for
        `STARVED_AFTER` seconds (a record skipped at the end of a source leaves no later record
        to show the hole, and alignment would hold its partition's records for it for ever), and
        an owned partition that delivered nothing since this worker took it. A paused partition
        delivers nothing by design."""
        now = time.monotonic() if now is None else now
        aligner, rereads = self.aligner, self.rereads
        await rereads.reseek(
            now,
            starved=lambda: aligner.starved(now, STARVED_AFTER, rereads.has_more),
            # A partition that delivered something: alignment watches all its sources.
            watched=lambda topic, partition: partition in aligner.partitions,
            paused=self._paused)

    def revoked(self, sources: set[tuple[str, int]]) -> None:
        """The engine took these (input topic, partition) away: what they held was never
        acknowledged, and their new owner reads it again."""
        self.aligner.drop({partition for _, partition in sources})
        self.in_order.drop(sources)
        self.rereads.revoked(sources)
        for source in sources:
            if source in self._paused:
                # The engine forgets its pause with the assignment; resumed in case it keeps it.
                self._paused.discard(source)
                self.source.resume(*source)
        metrics.PAUSED.set(len(self._paused))
