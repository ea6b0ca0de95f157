"""A send the producer gave up on stops the worker before any offset is committed past it
(agents/outputs.py `delivered`): at-least-once delivery of outcomes, never a silent loss."""

from __future__ import annotations

import asyncio

import pytest

from agents import outputs
from agents.outputs import EXIT_SEND_FAILED, delivered, producer_send
from schemas import topics
from streams.pipeline.runtime import pinned_partitions


class Exited(BaseException):
    pass


@pytest.fixture
def exits(monkeypatch):
    codes: list[int] = []

    def fake_exit(code: int) -> None:
        codes.append(code)
        raise Exited

    monkeypatch.setattr(outputs.os, "_exit", fake_exit)
    return codes


def _future(loop: asyncio.AbstractEventLoop, exc: BaseException | None) -> asyncio.Future:
    fut = loop.create_future()
    if exc is None:
        fut.set_result("metadata")
    else:
        fut.set_exception(exc)
    return fut


def test_a_delivered_send_changes_nothing(exits):
    loop = asyncio.new_event_loop()
    try:
        delivered(_future(loop, None))
        fut = _future(loop, None)
        fut.cancel()
        delivered(fut)
    finally:
        loop.close()
    assert exits == []


def test_a_failed_send_exits_with_its_code(exits):
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(Exited):
            delivered(_future(loop, RuntimeError("NotLeaderForPartition, retries spent")))
    finally:
        loop.close()
    assert exits == [EXIT_SEND_FAILED]


def test_every_send_is_watched(exits):
    # Through the producer Faust gives: the callback is attached to each send's future.
    class Producer:
        def __init__(self, loop):
            self.loop, self.futures = loop, []

        async def send(self, *args):
            fut = self.loop.create_future()
            self.futures.append(fut)
            return fut

    async def run() -> None:
        loop = asyncio.get_running_loop()
        app = type("App", (), {"producer": Producer(loop)})()
        send = producer_send(app, pinned_partitions(4, 4))
        await send("mynapoint.decisions", b"P1", b"{}")
        app.producer.futures[0].set_exception(RuntimeError("gone"))
        await asyncio.sleep(0)  # the done callback runs (the loop logs the stand-in's raise)

    asyncio.run(run())
    assert exits == [EXIT_SEND_FAILED]


def test_journal_and_claims_records_go_to_their_key_partition_at_the_start_up_count():
    # What the producer is told: the partition of the key over the counts the worker started
    # with, for the journal and the claims; for outcomes, the producer's own partitioner.
    class Producer:
        def __init__(self, loop):
            self.loop, self.calls = loop, []

        async def send(self, topic, key, value, partition, timestamp, headers):
            self.calls.append((topic, key, partition))
            fut = self.loop.create_future()
            fut.set_result(None)
            return fut

    async def run() -> list:
        loop = asyncio.get_running_loop()
        app = type("App", (), {"producer": Producer(loop)})()
        send = producer_send(app, pinned_partitions(4, 6))
        for topic in (topics.JOURNAL, topics.CLAIMS, "mynapoint.decisions"):
            for key in (b"P0000001", b"P0000002", b"P0000003"):
                await send(topic, key, b"{}")
        return app.producer.calls

    calls = asyncio.run(run())
    want = {topics.JOURNAL: 4, topics.CLAIMS: 6}
    for topic, key, partition in calls:
        if topic in want:
            assert partition == topics.partition_for_key(key, want[topic])
        else:
            assert partition is None
    assert {p for t, _, p in calls if t == topics.JOURNAL} != {None}
