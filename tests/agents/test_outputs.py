"""A send the producer gave up on stops the worker before any offset is committed past it
(agents/outputs.py `delivered`): at-least-once delivery of outcomes, never a silent loss."""

from __future__ import annotations

import asyncio

import pytest

from agents import outputs
from agents.outputs import EXIT_SEND_FAILED, delivered, producer_send


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
        send = producer_send(app)
        await send("mynapoint.decisions", b"P1", b"{}")
        app.producer.futures[0].set_exception(RuntimeError("gone"))
        await asyncio.sleep(0)  # the done callback runs (the loop logs the stand-in's raise)

    asyncio.run(run())
    assert exits == [EXIT_SEND_FAILED]
