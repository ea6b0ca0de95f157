"""The intake agent: runs the intake step (streams/pipeline/intake.py) over the input topics, with
Faust's consumer as its `IntakeSource`."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.errors import KafkaError
from faust.types import TP

from agents.faust_private import committed_offset, pause_fetching
from schemas import topics
from streams.pipeline.intake import ALIGN_TICK, RESEEK_EVERY, Intake
from streams.pipeline.outputs import Outputs

INPUTS = frozenset(topics.INPUT_TOPICS)
#: How long to wait for the consumer's position of a partition (seconds); it waits only while
#: the position is being reset.
POSITION_TIMEOUT = 5.0


class FaustSource:
    """Faust's consumer as the intake step's `IntakeSource`; tokens are Faust events."""

    __slots__ = ("app", "_tps")

    pausable = True

    def __init__(self, app: Any) -> None:
        self.app = app
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
                if tp.topic in INPUTS]

    def committed(self, topic: str, partition: int) -> int | None:
        # Faust does not know it before its seek after a rebalance, nor tell 0 from none.
        return committed_offset(self.app, self._tp(topic, partition))

    async def seek(self, topic: str, partition: int, offset: int) -> None:
        await self.app.consumer.seek(self._tp(topic, partition), offset)

    async def position(self, topic: str, partition: int) -> int | None:
        # aiokafka's position, asked on Faust's consumer thread: the next offset its `getmany`
        # returns (records it fetched and has not returned yet are still ahead of it).
        tp = self._tp(topic, partition)
        if tp not in self.app.consumer.assignment():
            return None
        try:
            position: int | None = await asyncio.wait_for(self.app.consumer.position(tp),
                                                          POSITION_TIMEOUT)
        except (TimeoutError, KafkaError):
            return None  # being reset, or no longer assigned: unknown
        return position

    def rebalancing(self) -> bool:
        return bool(self.app.rebalancing)

    def pause(self, topic: str, partition: int) -> None:
        pause_fetching(self.app, (topic, partition), True)

    def resume(self, topic: str, partition: int) -> None:
        pause_fetching(self.app, (topic, partition), False)

    def acknowledge(self, token: Any) -> None:
        # During a rebalance Faust forgets the revoked partitions' bookkeeping; an event read
        # in an earlier generation belongs to an assignment that ended.
        if token.message.generation_id == self.app.consumer_generation_id:
            token.ack()


def register(app: Any, inputs: Any, out: Outputs, idle_wait: float, max_held: int) -> Intake:
    """Adds the intake agent and its timers to `app`; returns its step (for `revoked`)."""
    step = Intake(FaustSource(app), out, idle_wait, max_held)
    on_record = step.on_record

    @app.agent(inputs, name="intake")
    async def intake(stream: Any) -> None:
        # `noack`: records are acknowledged by the step, once journaled or dead-lettered.
        async for event in stream.noack().events():
            msg = event.message
            if msg.generation_id != app.consumer_generation_id:
                # Read before the last rebalance: its partition was revoked (and read again from
                # the committed offset by whoever owns it now).
                continue
            await on_record(msg.topic, msg.partition, msg.offset, event.key, event.value, event)

    @app.timer(interval=ALIGN_TICK)
    async def release_idle() -> None:
        # Releases what waited for silent sources even when no new record arrives.
        await step.release()

    @app.timer(interval=RESEEK_EVERY)
    async def reseek_holes() -> None:
        await step.reseek()

    return step
