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
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from schemas import topics
from schemas.codec import BAD_KEY, INTERNAL_ERROR, MISSING_VALUE, BadInput, decode_event
from schemas.events import Event
from schemas.journal import JOURNAL_ENCODER, EventEntry
from streams.core.align import FOUND, TAKE, Aligner, Continuity, InOrder
from streams.pipeline import metrics
from streams.pipeline.outputs import Outputs
from streams.pipeline.runtime import At, IntakeSource

log = logging.getLogger("mynapoint")

#: How often the engine should call `Intake.release` when no record arrives (seconds): held
#: records are re-examined then, so what waited for silent sources goes out.
ALIGN_TICK = 0.1
#: How often the engine should call `Intake.reseek`: a hole in a source's offsets that was sought
#: and not yet read is sought again (seconds).
RESEEK_EVERY = 1.0
#: A source the broker has more of that delivered nothing for this long (seconds) is read again
#: from its next offset (`Intake.reseek`): the consumer has lost its place in it.
STARVED_AFTER = 10.0
#: The same for a source the consumer has not even handed over its next record of (its position
#: is still there): it is behind, not lost. A consumer catching up on a backlog serves some
#: sources for many seconds before others, and a seek would throw away what it has fetched of
#: that source. Read again only after this long: a stuck fetch.
STARVED_BEHIND_AFTER = 60.0


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


class Intake:
    """Handles the input topics, for every partition the engine assigned to this worker.

    The engine calls `on_record` for each input record, `release` every `ALIGN_TICK`, `reseek`
    every `RESEEK_EVERY`, and `revoked` when it loses partitions, all on one event loop (from
    different tasks: an agent and its timers).
    """

    def __init__(self, source: IntakeSource, out: Outputs, idle_wait: float,
                 max_held: int | None = None) -> None:
        """`max_held`: the records one input partition may hold before it is paused (None: no
        bound; none either where the engine cannot pause one partition, `source.pausable`)."""
        self.source = source
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
        # Records the consumer skipped are read again before anything after them is taken.
        self.continuity = Continuity()
        # The last value given to the held-records gauge (set again only when it changes).
        self._last_held = -1
        # One releaser at a time: a send can wait (a full producer buffer), and a release from
        # another task meanwhile would put its records in the journal among this one's.
        self._releasing = asyncio.Lock()
        # When a starved source was last sought (monotonic seconds): sought again only after
        # another STARVED_AFTER without a record.
        self._starved_sought: dict[tuple[str, int], float] = {}
        # Owned input partitions that have delivered nothing yet, since when.
        self._undelivered: dict[tuple[str, int], float] = {}

    async def on_record(self, topic: str, partition: int, offset: int, key: bytes | None,
                        value: bytes | None, token: Any) -> None:
        """One input record; `token` is what `IntakeSource.acknowledge` is given for it."""
        source = self.source
        # A source starts at its committed offset; the engine may not know it yet (before its
        # seek after a rebalance): then at its first record.
        start = source.committed(topic, partition)
        verdict, at = self.continuity.check((topic, partition), offset,
                                            offset if start is None else start)
        if verdict is not TAKE:
            if verdict is FOUND:  # one warning per hole; SEEK: the same one, sought again
                log.warning("%s/%s: the consumer skipped offsets %s to %s; reading them again",
                            topic, partition, at, offset - 1)
                metrics.labelled(metrics.REREADS, topic).inc()
            await source.seek(topic, partition, at)
            return
        metrics.labelled(metrics.EVENTS_IN, topic, "intake").inc()
        entry = self.in_order.track(topic, partition, token)
        try:
            ev = checked_record(key, value)
        except BadInput as exc:
            await self.out.refuse(exc, At(topic, partition, offset), value)
            self._acknowledge(entry)
            self.aligner.passed(topic, partition, offset, time.monotonic())
            await self.release(partition)
            return
        metrics.labelled(metrics.EVENTS_BY_TYPE, topic, type(ev).__struct_config__.tag).inc()
        held = self.aligner.add(topic, partition, offset, ev.occurred_at.timestamp(),
                                (value, key, entry), time.monotonic())
        if held >= self._pause_at and (topic, partition) not in self._paused:
            self._paused.add((topic, partition))
            source.pause(topic, partition)
            metrics.labelled(metrics.PAUSES, topic).inc()
            metrics.PAUSED.set(len(self._paused))
        await self.release(partition)

    def _has_more(self, topic: str, partition: int, next_offset: int) -> bool:
        # The high watermark of the consumer's last fetch; None before any fetch answered for
        # this partition: then only silence counts.
        hw = self.source.highwater(topic, partition)
        if hw is None:
            return False
        return hw > self._next_to_read(topic, partition, next_offset)

    def _next_to_read(self, topic: str, partition: int, next_offset: int) -> int:
        # A source this worker has read nothing of since it took the partition starts at the
        # group's committed offset; everything before that was journaled by an earlier owner.
        return max(next_offset, self.source.committed(topic, partition) or 0)

    async def release(self, partition: int | None = None) -> None:
        """Sends the journal every held record that alignment lets go, in event-time order (of
        one partition: the one a record just arrived on)."""
        send = self.out.send
        async with self._releasing:
            released = self.aligner.release(time.monotonic(), self._has_more, partition)
            for held in released:
                value, key, entry = held.item
                record = EventEntry(topic=held.topic, partition=held.partition,
                                    offset=held.offset, value=value, late=held.late)
                await send(topics.JOURNAL, key, JOURNAL_ENCODER.encode(record))
                if held.late:
                    metrics.labelled(metrics.LATE, held.topic).inc()
                # Acknowledged only now: no input offset is committed past a record that has
                # not reached the journal, so a crash loses nothing that was still held.
                self._acknowledge(entry)
            if self._deferred and not self.source.rebalancing():
                self._acknowledge_deferred()
            if released and self._paused:
                # Only a release lowers what a paused partition holds (a revoke resumes its own).
                self._resume_drained()
            held_now = self.aligner.held()
            if held_now != self._last_held:
                metrics.HELD.set(held_now)
                self._last_held = held_now

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
        """Seeks again every hole sought and not yet read: its re-read may have been dropped
        again with nothing after it to deliver (Faust's fetch loop finishing an older batch).

        And reads again a source the broker has more of that delivered nothing for
        `STARVED_AFTER` seconds: a record skipped at the end of a source leaves no later record
        to show the hole, and alignment would hold its partition's records for it for ever.
        A source whose next record the consumer has not handed over yet is only behind: read
        again only after `STARVED_BEHIND_AFTER`.
        """
        if self.source.rebalancing():
            return
        for (topic, partition), offset in self.continuity.holes():
            await self.source.seek(topic, partition, offset)
        now = time.monotonic() if now is None else now
        for topic, partition, nxt, silent in self.aligner.starved(now, STARVED_AFTER,
                                                                  self._has_more):
            source = (topic, partition)
            if source in self._paused or not self._due(source, now):
                continue  # a paused partition delivers nothing, by design
            at = self._next_to_read(topic, partition, nxt)
            wait = STARVED_BEHIND_AFTER if silent >= STARVED_BEHIND_AFTER else STARVED_AFTER
            if wait < STARVED_BEHIND_AFTER:
                if await self._behind(topic, partition, at):
                    continue
                if self.source.rebalancing():
                    return  # began while the consumer was asked: no seeks now
            log.warning("%s/%s: nothing read for %.0f s although the broker holds offsets up to "
                        "%s; reading again from offset %s", topic, partition, wait,
                        self.source.highwater(topic, partition), at)
            await self._read_again(topic, partition, at, now)
        await self._kick_undelivered(now)

    async def _behind(self, topic: str, partition: int, at: int) -> bool:
        """Whether the consumer has not handed over the record at `at` yet: it has not come to
        it (or is about to hand it over), so the source is behind, not lost."""
        position = await self.source.position(topic, partition)
        return position is not None and position <= at

    def _due(self, source: tuple[str, int], now: float) -> bool:
        """Whether `source` may be read again now: at most once per `STARVED_AFTER`."""
        return now - self._starved_sought.get(source, float("-inf")) >= STARVED_AFTER

    async def _read_again(self, topic: str, partition: int, at: int, now: float) -> None:
        self._starved_sought[(topic, partition)] = now
        metrics.labelled(metrics.REREADS, topic).inc()
        await self.source.seek(topic, partition, at)

    async def _kick_undelivered(self, now: float) -> None:
        """Seeks an owned input partition that has delivered nothing for `STARVED_AFTER` seconds
        since this worker took it, although the broker has more of it (or the consumer has not
        even fetched it: no high watermark), to where it resumes. Seen on Apache Kafka with Faust
        after a rescale: the worker owned the new partitions and read nothing of them for
        minutes. Alignment takes such a source as idle, and the starved check above cannot see
        it: it watches only the partitions that delivered something."""
        undelivered = {}
        for topic, partition in self.source.owned():
            if partition in self.aligner.partitions:
                continue  # delivered something: the starved check watches it
            if (self.source.highwater(topic, partition) is not None
                    and not self._has_more(topic, partition, 0)):
                continue
            source = (topic, partition)
            since = undelivered[source] = self._undelivered.get(source, now)
            if now - since < STARVED_AFTER or not self._due(source, now):
                continue
            at = self._next_to_read(topic, partition, 0)
            log.warning("%s/%s: nothing delivered for %.0f s since this worker took it, although "
                        "the broker holds offsets up to %s; reading it from offset %s", topic,
                        partition, now - since, self.source.highwater(topic, partition), at)
            await self._read_again(topic, partition, at, now)
        self._undelivered = undelivered

    def revoked(self, sources: set[tuple[str, int]]) -> None:
        """The engine took these (input topic, partition) away: what they held was never
        acknowledged, and their new owner reads it again."""
        self.aligner.drop({partition for _, partition in sources})
        self.in_order.drop(sources)
        self.continuity.drop(sources)
        for source in sources:
            self._starved_sought.pop(source, None)
            self._undelivered.pop(source, None)
            if source in self._paused:
                # The engine forgets its pause with the assignment; resumed in case it keeps it.
                self._paused.discard(source)
                self.source.resume(*source)
        metrics.PAUSED.set(len(self._paused))
