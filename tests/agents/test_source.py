"""Faust's consumer as the steps' source (agents/source.py): the position asked before a silent
source is read again (streams/pipeline/rereads.py), and each step's own partitions."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import IllegalStateError
from faust.types import TP

from agents.source import FaustSource, admitted
from streams.pipeline.rereads import Rereads


class Consumer:
    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.asked: list[TP] = []
        # What Faust's fetch loop handed to the streams last (agents.faust_private.handed_over).
        self._read_offset: dict[TP, int | None] = {}

    def assignment(self) -> set[TP]:
        return {TP("mynapoint.cards", 0), TP("mynapoint.journal", 0),
                TP("mynapoint-persons-changelog", 0)}

    async def position(self, tp: TP) -> int | None:
        self.asked.append(tp)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer  # type: ignore[no-any-return]


class App:
    def __init__(self, answer: Any) -> None:
        self.consumer = Consumer(answer)


@pytest.mark.parametrize(("answer", "expected"), [
    (7, 7),
    (None, None),
    (IllegalStateError("No current assignment for partition"), None),  # revoked meanwhile
])
def test_the_position_is_asked_of_the_consumer_of_an_assigned_partition(answer, expected):
    app = App(answer)
    source = FaustSource(app, ["mynapoint.cards"])
    assert asyncio.run(source.position("mynapoint.cards", 0)) == expected
    assert app.consumer.asked == [TP("mynapoint.cards", 0)]


def test_records_still_in_faust_s_fetch_loop_are_not_handed_over_yet():
    # aiokafka returned offsets up to 9; Faust's fetch loop handed offset 4 to the streams and
    # waits (another stream's buffer is full): the consumer hands over offset 5 next.
    app = App(10)
    source = FaustSource(app, ["mynapoint.cards"])
    app.consumer._read_offset[TP("mynapoint.cards", 0)] = 4
    assert asyncio.run(source.position("mynapoint.cards", 0)) == 5
    app.consumer._read_offset[TP("mynapoint.cards", 0)] = 9
    assert asyncio.run(source.position("mynapoint.cards", 0)) == 10


def test_an_unassigned_partition_has_no_position_and_the_consumer_is_not_asked():
    app = App(7)
    assert asyncio.run(FaustSource(app, ["mynapoint.cards"]).position("mynapoint.cards", 1)) is None
    assert app.consumer.asked == []


def test_each_step_owns_only_the_assigned_partitions_of_its_topics():
    app = App(7)
    assert FaustSource(app, ["mynapoint.cards", "mynapoint.links"]).owned() == [
        ("mynapoint.cards", 0)]
    assert FaustSource(app, ["mynapoint.journal"]).owned() == [("mynapoint.journal", 0)]


class Event:
    def __init__(self, offset: int) -> None:
        self.message = type("Message", (), {"topic": "mynapoint.journal", "partition": 1,
                                            "offset": offset})()


class Stream:
    """An agent's stream: its events, and the channel buffering them."""

    def __init__(self, offsets: list[int]) -> None:
        self.offsets = offsets
        self.channel = type("Channel", (), {"empty": lambda _: False})()

    async def events(self) -> Any:
        for offset in self.offsets:
            yield Event(offset)


class JournalSource:
    def __init__(self) -> None:
        self.sought: list[tuple[str, int, int]] = []

    def committed(self, topic: str, partition: int) -> int | None:
        return 0

    async def seek(self, topic: str, partition: int, offset: int) -> None:
        self.sought.append((topic, partition, offset))


def test_an_agent_handles_only_the_events_its_rereads_admit():
    source = JournalSource()
    watch = Rereads(source)  # type: ignore[arg-type]

    async def handled(stream: Stream) -> list[int]:
        return [event.message.offset async for event in admitted(stream, watch)]

    # Offset 2 comes after a hole at 1: not handled, the consumer is sought back to 1.
    assert asyncio.run(handled(Stream([0, 2]))) == [0]
    assert source.sought == [("mynapoint.journal", 1, 1)]
    assert watch.busy() is True  # the stream's channel holds records
    assert asyncio.run(handled(Stream([1, 2]))) == [1, 2]
