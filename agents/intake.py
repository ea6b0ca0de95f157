"""The intake agent: decode and validate each input record, then release it to the journal in
event-time order (streams/core/align.py). Bad records become dead letters."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from faust.types import TP

from agents import metrics
from agents.faust_private import committed_offset
from agents.outputs import Outputs
from schemas import topics
from schemas.codec import BAD_KEY, INTERNAL_ERROR, MISSING_VALUE, BadInput, decode_event
from schemas.events import Event
from schemas.journal import JOURNAL_ENCODER, EventEntry
from streams.core.align import FOUND, TAKE, Aligner, Continuity, InOrder

log = logging.getLogger("mynapoint")

#: How often held records are re-examined when no new record arrives (seconds).
ALIGN_TICK = 0.1
#: How often a hole in a source's offsets that was sought and not yet read is sought again (s).
RESEEK_EVERY = 1.0


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

    An agent that raises is restarted by Faust and the record it was on is lost; every input
    record must end as an event or a dead letter instead.
    """
    try:
        return validate_record(key, value)
    except BadInput:
        raise
    except Exception as bug:
        raise BadInput(INTERNAL_ERROR, f"validating this record failed ({type(bug).__name__}: "
                       f"{bug}); this is a bug: report it with this dead letter") from bug


def register(app: Any, inputs: Any, out: Outputs, idle_wait: float) -> None:
    """Adds the intake agent, its idle-release timer and its revocation handler to `app`."""
    aligner = Aligner(topics.INPUT_TOPICS, idle_wait)
    # Input records are acknowledged in offset order per partition, and only those read in the
    # current assignment outside a rebalance (`acknowledge`).
    in_order = InOrder()
    deferred: list[Any] = []
    # Records the consumer skipped are read again before anything after them is taken.
    continuity = Continuity()
    # One releaser at a time: the journal must receive released records in release order.
    releasing = asyncio.Lock()

    def acknowledge(entry: list[Any]) -> None:
        """Marks one input record finished (journaled or dead-lettered) and acknowledges, in
        offset order, what that completes.

        Faust commits the highest offset of the first run of consecutive acknowledged offsets,
        and lets a run start one past its committed offset (or anywhere while nothing is
        committed): one record acknowledged ahead of an earlier, still-held one would commit past
        the held one, and a crash or a rebalance would lose it. During a rebalance Faust has
        already forgotten the revoked partitions' bookkeeping, so an acknowledgement then would
        seed the next assignment's with a stray offset: those wait, and are dropped if their
        assignment ended (the new owner reads them again from the committed offset).
        """
        deferred.extend(in_order.done(entry))
        if deferred and not app.rebalancing:
            acknowledge_deferred()

    def acknowledge_deferred() -> None:
        generation = app.consumer_generation_id
        for event in deferred:
            if event.message.generation_id == generation:
                event.ack()
        deferred.clear()

    tps: dict[tuple[str, int], TP] = {}
    # The last value given to the held-records gauge (set again only when it changes).
    last_held = [-1]

    def has_more(topic: str, partition: int, next_offset: int) -> bool:
        # The high watermark of the consumer's last fetch (correct on Tansu too); None before any
        # fetch answered for this partition: then only silence counts.
        tp = tps.get((topic, partition))
        if tp is None:
            tp = tps[(topic, partition)] = TP(topic, partition)
        hw = app.consumer.highwater(tp)
        if hw is None:
            return False
        # A source this worker has read nothing of since it took the partition starts at the
        # group's committed offset; everything before that was journaled by an earlier owner.
        return hw > max(next_offset, committed_offset(app, tp) or 0)

    async def release_aligned() -> None:
        async with releasing:
            for held in aligner.release(time.monotonic(), has_more):
                event, key, entry = held.item
                record = EventEntry(topic=held.topic, partition=held.partition,
                                    offset=held.offset, value=event.value, late=held.late)
                await out.send(topics.JOURNAL, key, JOURNAL_ENCODER.encode(record))
                if held.late:
                    metrics.labelled(metrics.LATE, held.topic).inc()
                # Acknowledged only now: no input offset is committed past a record that has
                # not reached the journal, so a crash loses nothing that was still held.
                acknowledge(entry)
            if deferred and not app.rebalancing:
                acknowledge_deferred()
            held_now = aligner.held()
            if held_now != last_held[0]:
                metrics.HELD.set(held_now)
                last_held[0] = held_now

    @app.agent(inputs, name="intake")
    async def intake(stream: Any) -> None:
        async for event in stream.noack().events():
            msg = event.message
            if msg.generation_id != app.consumer_generation_id:
                # Read before the last rebalance: its partition was revoked (and read again from
                # the committed offset by whoever owns it now).
                continue
            # A source starts at its committed offset; Faust does not know it before its seek
            # after a rebalance (nor tell 0 from none): then at its first record.
            start = committed_offset(app, msg.tp)
            verdict, offset = continuity.check((msg.topic, msg.partition), msg.offset,
                                               msg.offset if start is None else start)
            if verdict is not TAKE:
                if verdict is FOUND:  # one warning per hole; SEEK: the same one, sought again
                    log.warning("%s/%s: the consumer skipped offsets %s to %s; reading them "
                                "again", msg.topic, msg.partition, offset, msg.offset - 1)
                await app.consumer.seek(msg.tp, offset)
                continue
            metrics.labelled(metrics.EVENTS_IN, msg.topic, "intake").inc()
            entry = in_order.track(msg.topic, msg.partition, event)
            try:
                ev = checked_record(event.key, event.value)
            except BadInput as exc:
                await out.refuse(exc, msg, event.value)
                acknowledge(entry)
                aligner.passed(msg.topic, msg.partition, msg.offset, time.monotonic())
                await release_aligned()
                continue
            metrics.labelled(metrics.EVENTS_BY_TYPE, msg.topic,
                             type(ev).__struct_config__.tag).inc()
            aligner.add(msg.topic, msg.partition, msg.offset, ev.occurred_at.timestamp(),
                        (event, event.key, entry), time.monotonic())
            await release_aligned()

    @app.timer(interval=ALIGN_TICK)
    async def release_idle() -> None:
        # Releases what waited for silent sources even when no new record arrives.
        await release_aligned()

    @app.timer(interval=RESEEK_EVERY)
    async def reseek_holes() -> None:
        # A hole whose re-read the consumer dropped again, with nothing after it to deliver, is
        # sought again (Faust's fetch loop has finished its older batch by now).
        if app.rebalancing:
            return
        for (topic, partition), offset in continuity.holes():
            await app.consumer.seek(TP(topic, partition), offset)

    # Faust's stub wants a receiver taking any positional arguments; the signal sends one
    # (`revoked`) plus `signal=` as a keyword.
    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def forget_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        # Held records of revoked partitions were never acknowledged: their new owner reads them.
        inputs_revoked = {tp for tp in revoked if tp.topic in topics.INPUT_TOPICS}
        aligner.drop({tp.partition for tp in inputs_revoked})
        sources = {(tp.topic, tp.partition) for tp in inputs_revoked}
        in_order.drop(sources)
        continuity.drop(sources)
