"""Faust's consumer as the steps' `Source` (streams/pipeline/runtime.py), and the timer that
reads again where it lost its place (streams/pipeline/rereads.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any, cast

from aiokafka.errors import KafkaError
from faust.types import TP

from agents.faust_private import (
    forget_gaps,
    handed_over,
    handing_over,
    pass_over,
    pause_fetching,
    start_offset,
)
from streams.pipeline.rereads import RESEEK_EVERY, Rereads

#: How long to wait for the consumer's position of a partition (seconds); it waits only while
#: the position is being reset.
POSITION_TIMEOUT = 5.0
#: How long a seek waits at most for Faust's fetch loop to finish handing over the record that
#: asked for it (seconds); normally a few turns of the event loop.
HANDOVER_WAIT = 1.0


class FaustSource:
    """Faust's consumer as a step's `Source` of `names` (topics); of the input topics, intake's
    `IntakeSource`, whose tokens are Faust events."""

    __slots__ = ("app", "topics", "_tps")

    pausable = True

    def __init__(self, app: Any, names: Iterable[str]) -> None:
        self.app = app
        self.topics = frozenset(names)
        # One `TP` per source, made once.
        self._tps: dict[tuple[str, int], TP] = {}

    def _tp(self, topic: str, partition: int) -> TP:
        tp = self._tps.get((topic, partition))
        if tp is None:
            tp = self._tps[(topic, partition)] = TP(topic, partition)
        return tp

    def highwater(self, topic: str, partition: int) -> int | None:
        # The high watermark of the consumer's last fetch (correct on Tansu too).
        hw: int | None = self.app.consumer.highwater(self._tp(topic, partition))
        return hw

    def owned(self) -> list[tuple[str, int]]:
        return [(tp.topic, tp.partition) for tp in self.app.consumer.assignment()
                if tp.topic in self.topics]

    def start(self, topic: str, partition: int) -> int | None:
        # Unknown before Faust's seek after a rebalance (and the first offset of a partition with
        # nothing committed, learnt at that seek).
        return start_offset(self.app, self._tp(topic, partition))

    async def seek(self, topic: str, partition: int, offset: int,
                   after: int | None = None) -> None:
        tp = self._tp(topic, partition)
        if after is not None:
            await self._handover(tp, after)
        await self.app.consumer.seek(tp, offset)
        # What comes again from `offset` is acknowledged as it is handled; no commit passes it
        # before.
        forget_gaps(self.app, tp, offset)

    def passed_over(self, topic: str, partition: int, start: int, end: int) -> None:
        pass_over(self.app, self._tp(topic, partition), start, end)

    async def _handover(self, tp: TP, after: int) -> None:
        """Returns once Faust's fetch loop is done handing over the record at `after` (or after
        `HANDOVER_WAIT`): it marks a record read only once the step has it, which would undo a
        seek made before (`faust_private.track_handovers`)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HANDOVER_WAIT
        turns = 0
        while handing_over(self.app, tp, after) and loop.time() < deadline:
            # A few turns of the event loop normally; then without spinning.
            await asyncio.sleep(0 if turns < 100 else 0.001)
            turns += 1

    async def position(self, topic: str, partition: int) -> int | None:
        # aiokafka's position, asked on Faust's consumer thread: the next offset its `getmany`
        # returns (records it fetched and has not returned yet are still ahead of it), or the
        # next one Faust's fetch loop hands to the streams if that is earlier.
        tp = self._tp(topic, partition)
        if tp not in self.app.consumer.assignment():
            return None
        try:
            position: int | None = await asyncio.wait_for(self.app.consumer.position(tp),
                                                          POSITION_TIMEOUT)
        except (TimeoutError, KafkaError):
            return None  # being reset, or no longer assigned: unknown
        # Records aiokafka returned wait in Faust's fetch loop until it hands them to the
        # streams, one at a time, while another stream's full buffer holds it up: not handed
        # over yet either.
        read = handed_over(self.app, tp)
        if position is not None and read is not None:
            position = min(position, read + 1)
        return position

    def rebalancing(self) -> bool:
        return bool(self.app.rebalancing)

    def pause(self, topic: str, partition: int) -> None:
        pause_fetching(self.app, (topic, partition), True)

    def resume(self, topic: str, partition: int) -> None:
        pause_fetching(self.app, (topic, partition), False)

    def current(self, message: Any) -> bool:
        """Whether Faust's `message` was read in the current assignment. One read before the last
        rebalance is read again from the committed offset by whoever owns its partition now."""
        return bool(message.generation_id == self.app.consumer_generation_id)

    def acknowledge(self, token: Any) -> None:
        # During a rebalance Faust forgets the revoked partitions' bookkeeping; an event read
        # in an earlier generation belongs to an assignment that ended.
        if self.current(token.message):
            token.ack()


def rereads(app: Any, name: str, names: Iterable[str]) -> Rereads:
    """A step's `Rereads` of the topics `names`, with the app's timer named `name` calling its
    `reseek` every `RESEEK_EVERY` (the step calls `admit` for each record)."""
    watch = Rereads(FaustSource(app, names))

    @app.timer(interval=RESEEK_EVERY, name=name)
    async def reseek() -> None:
        await watch.reseek(time.monotonic())

    return watch


async def admitted(stream: Any, watch: Rereads) -> AsyncIterator[Any]:
    """The events of an agent's `stream` that `watch` admits (none after a hole: they come again
    after it), with `watch.busy` telling whether Faust's buffer for the agent holds records.

    An event read before the last rebalance is neither handled nor admitted: it is read again
    from the committed offset by whoever owns its partition now, and it must not set where the
    source starts in the new assignment (as intake's agent does).

    An event is acknowledged once the agent has handled it (when it asks for the next one), and
    only if admitted: one passed over comes again after the hole, and a commit must not pass it
    before (Faust would acknowledge every event of the stream, `noack`)."""
    channel = stream.channel
    watch.busy = lambda: not channel.empty()
    admit = watch.admit
    source = cast(FaustSource, watch.source)
    current, acknowledge = source.current, source.acknowledge
    async for event in stream.noack().events():
        msg = event.message
        if not current(msg):
            continue
        if await admit(msg.topic, msg.partition, msg.offset, time.monotonic()):
            yield event
            acknowledge(event)
