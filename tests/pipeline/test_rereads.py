"""Reading a source again where the consumer lost its place (streams/pipeline/rereads.py), as the
ledger and the claims use it: every record through `admit`, `reseek` on a timer.

The CI failure behind it: after a rebalance, the answers to two persons' account claims were in
journal partition 2 (the `claims` table held the grants) and the ledger never folded them, while
intake, which had this check, read four input sources again."""

from __future__ import annotations

import asyncio

from schemas import topics
from streams.pipeline.rereads import STARVED_AFTER, STARVED_BEHIND_AFTER, Rereads

J = topics.JOURNAL


class Source:
    """A consumer of the journal: high watermarks, starts (committed offsets) and positions as
    set."""

    def __init__(self) -> None:
        self.ends: dict[tuple[str, int], int] = {}
        self.commits: dict[tuple[str, int], int] = {}
        self.positions: dict[tuple[str, int], int] = {}
        self.assignment: list[tuple[str, int]] = []
        self.sought: list[tuple[str, int, int]] = []
        self.passed: list[tuple[str, int, int, int]] = []
        self.balancing = False

    def highwater(self, topic: str, partition: int) -> int | None:
        return self.ends.get((topic, partition))

    def owned(self) -> list[tuple[str, int]]:
        return self.assignment

    def start(self, topic: str, partition: int) -> int | None:
        return self.commits.get((topic, partition))

    def passed_over(self, topic: str, partition: int, start: int, end: int) -> None:
        self.passed.append((topic, partition, start, end))

    async def seek(self, topic: str, partition: int, offset: int,
                   after: int | None = None) -> None:
        self.sought.append((topic, partition, offset))

    async def position(self, topic: str, partition: int) -> int | None:
        return self.positions.get((topic, partition))

    def rebalancing(self) -> bool:
        return self.balancing


def admitted(watch: Rereads, offsets: list[int], partition: int = 2, now: float = 0.0) -> list[int]:
    """The offsets of `offsets` (handed over in that order) that the step may handle."""
    return [o for o in offsets if asyncio.run(watch.admit(J, partition, o, now))]


def test_records_that_follow_on_from_the_committed_offset_are_handled():
    source = Source()
    source.commits[(J, 2)] = 40
    watch = Rereads(source)
    assert admitted(watch, [40, 41, 42]) == [40, 41, 42]
    assert source.sought == []


def test_after_a_hole_nothing_is_handled_until_the_hole_is_read_again():
    # A person's journal entries fold in order: an answer passed over must not be overtaken.
    source = Source()
    source.commits[(J, 2)] = 40
    watch = Rereads(source)
    assert admitted(watch, [40, 43, 44]) == [40]
    assert source.sought == [(J, 2, 41), (J, 2, 41)]
    asyncio.run(watch.reseek(now=1.0))  # not read yet: sought again
    assert source.sought[2:] == [(J, 2, 41)]
    # Read again from the hole: everything from there is handled, in order.
    assert admitted(watch, [41, 42, 43, 44]) == [41, 42, 43, 44]
    asyncio.run(watch.reseek(now=2.0))
    assert len(source.sought) == 3
    assert source.passed == []


def test_a_hole_without_records_is_passed_over_after_three_reads_from_its_start():
    # A transaction marker at 41: read from 41, the consumer hands over 42 each time. The engine
    # is told, so that its commits pass the hole; a hole that was filled is never passed over.
    source = Source()
    source.commits[(J, 2)] = 40
    watch = Rereads(source)
    assert admitted(watch, [40, 42, 42, 42, 42, 43]) == [40, 42, 43]
    assert source.sought == [(J, 2, 41)] * 3
    assert source.passed == [(J, 2, 41, 42)]
    assert admitted(watch, [45, 44, 45]) == [44, 45]
    assert source.passed == [(J, 2, 41, 42)]


def test_records_delivered_again_are_handled_again():
    # After a rebalance Faust reads from the committed offset again: the ledger folds a repeat
    # once and re-sends its outcomes as exact repeats, the claims answer it the same way.
    source = Source()
    watch = Rereads(source)
    assert admitted(watch, [10, 11, 12, 10, 11, 12, 13]) == [10, 11, 12, 10, 11, 12, 13]
    assert source.sought == []


def test_a_source_lost_at_its_end_is_read_again_from_its_next_offset():
    # The consumer handed over offsets 40-41 and then nothing, although the broker holds 42-43
    # and has handed them over (its position is past them): they were lost on the way.
    source = Source()
    source.commits[(J, 2)] = 40
    source.ends[(J, 2)] = 44
    source.positions[(J, 2)] = 44
    source.assignment = [(J, 2)]
    watch = Rereads(source)
    admitted(watch, [40, 41], now=100.0)
    asyncio.run(watch.reseek(now=100.0 + STARVED_AFTER - 1))
    assert source.sought == []
    asyncio.run(watch.reseek(now=100.0 + STARVED_AFTER))
    assert source.sought == [(J, 2, 42)]
    asyncio.run(watch.reseek(now=100.0 + STARVED_AFTER + 1))  # not again before another wait
    assert len(source.sought) == 1
    admitted(watch, [42, 43], now=100.0 + STARVED_AFTER + 2)
    asyncio.run(watch.reseek(now=100.0 + 3 * STARVED_AFTER))  # read to the end: nothing more
    assert len(source.sought) == 1


def test_a_source_read_to_its_end_is_silent_not_starved():
    source = Source()
    source.ends[(J, 2)] = 42
    source.positions[(J, 2)] = 42
    watch = Rereads(source)
    admitted(watch, [40, 41], now=0.0)
    asyncio.run(watch.reseek(now=10 * STARVED_BEHIND_AFTER))
    assert source.sought == []


def test_a_silent_source_the_consumer_has_not_come_to_is_behind_not_lost():
    source = Source()
    source.ends[(J, 2)] = 44
    source.positions[(J, 2)] = 42  # not handed over yet
    watch = Rereads(source)
    admitted(watch, [40, 41], now=0.0)
    asyncio.run(watch.reseek(now=STARVED_AFTER))
    asyncio.run(watch.reseek(now=STARVED_BEHIND_AFTER - 1))
    assert source.sought == []
    asyncio.run(watch.reseek(now=STARVED_BEHIND_AFTER))  # a stuck fetch: read again after all
    assert source.sought == [(J, 2, 42)]


def test_nothing_is_taken_for_starved_while_the_step_has_records_waiting():
    # A burst of one journal partition queued ahead of the others keeps them silent; their next
    # records may be in that queue.
    source = Source()
    source.ends[(J, 2)] = 44
    source.positions[(J, 2)] = 44
    source.assignment = [(J, 2), (J, 3)]
    source.ends[(J, 3)] = 5
    watch = Rereads(source)
    waiting = [True]
    watch.busy = lambda: waiting[0]
    admitted(watch, [40, 41, 43], now=0.0)  # a hole at 42
    sought = len(source.sought)
    asyncio.run(watch.reseek(now=5 * STARVED_AFTER))
    assert source.sought[sought:] == [(J, 2, 42)]  # the hole only
    waiting[0] = False
    asyncio.run(watch.reseek(now=6 * STARVED_AFTER))
    asyncio.run(watch.reseek(now=8 * STARVED_AFTER))
    assert (J, 3, 0) in source.sought  # and partition 3, which never delivered anything


def test_an_owned_source_that_delivers_nothing_is_read_from_where_it_resumes():
    source = Source()
    source.assignment = [(J, 1), (J, 2), (J, 3)]
    source.commits = {(J, 1): 7, (J, 2): 5, (J, 3): 3}
    # 1: never fetched; 2: read to its end by the committed offset; 3: more to read.
    source.ends = {(J, 2): 5, (J, 3): 9}
    watch = Rereads(source)
    asyncio.run(watch.reseek(now=100.0))
    asyncio.run(watch.reseek(now=100.0 + STARVED_AFTER - 1))
    assert source.sought == []
    asyncio.run(watch.reseek(now=100.0 + STARVED_AFTER))
    assert sorted(source.sought) == [(J, 1, 7), (J, 3, 3)]


def test_an_owned_source_the_consumer_has_not_come_to_is_behind_not_lost():
    # Catching up on a backlog, the consumer served the input topics for half a minute before
    # the claims partition: seeking it every 10 s threw away what it had fetched of it.
    source = Source()
    source.assignment = [(J, 1)]
    source.ends = {(J, 1): 9}
    source.positions = {(J, 1): 0}
    watch = Rereads(source)
    asyncio.run(watch.reseek(now=0.0))
    asyncio.run(watch.reseek(now=STARVED_AFTER))
    asyncio.run(watch.reseek(now=STARVED_BEHIND_AFTER - 1))
    assert source.sought == []
    asyncio.run(watch.reseek(now=STARVED_BEHIND_AFTER))  # a stuck fetch: read again after all
    assert source.sought == [(J, 1, 0)]


def test_nothing_is_sought_during_a_rebalance_and_revoked_sources_start_afresh():
    source = Source()
    source.ends[(J, 2)] = 44
    source.positions[(J, 2)] = 44
    watch = Rereads(source)
    admitted(watch, [40, 42], now=0.0)  # a hole at 41, sought once
    source.balancing = True
    asyncio.run(watch.reseek(now=2 * STARVED_AFTER))
    assert source.sought == [(J, 2, 41)]
    source.balancing = False
    watch.revoked({(J, 2)})
    # Taken back: it starts at its first record (no start known), no hole, no silence.
    assert admitted(watch, [60, 61], now=3 * STARVED_AFTER) == [60, 61]
    asyncio.run(watch.reseek(now=3 * STARVED_AFTER + 1))
    assert source.sought == [(J, 2, 41)]


def test_a_rebalance_that_begins_while_the_position_is_asked_stops_the_seeks():
    source = Source()
    source.ends[(J, 2)] = 44
    watch = Rereads(source)
    admitted(watch, [40, 41], now=0.0)

    async def rebalance_on_asking(topic: str, partition: int) -> int | None:
        source.balancing = True
        return 44

    source.position = rebalance_on_asking  # type: ignore[method-assign]
    asyncio.run(watch.reseek(now=STARVED_AFTER))
    assert source.sought == []
