"""The intake agent: runs the intake step (streams/pipeline/intake.py) over the input topics, with
Faust's consumer as its `IntakeSource` (agents/source.py)."""

from __future__ import annotations

from typing import Any

from agents.source import FaustSource
from schemas import topics
from streams.pipeline.intake import ALIGN_TICK, RELEASE_EVERY, Intake
from streams.pipeline.outputs import Outputs
from streams.pipeline.rereads import RESEEK_EVERY


def register(app: Any, inputs: Any, out: Outputs, idle_wait: float, max_held: int,
             journal_partitions: int, journal_batch: int) -> Intake:
    """Adds the intake agent and its timers to `app`; returns its step (for `revoked`)."""
    source = FaustSource(app, topics.INPUT_TOPICS)
    step = Intake(source, out, idle_wait, max_held, journal_partitions, RELEASE_EVERY,
                  journal_batch)
    on_record, current = step.on_record, source.current

    @app.agent(inputs, name="intake")
    async def intake(stream: Any) -> None:
        # `noack`: records are acknowledged by the step, once journaled or dead-lettered.
        async for event in stream.noack().events():
            msg = event.message
            if not current(msg):
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
