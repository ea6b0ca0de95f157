"""Quix Streams' consumer as the intake step's `IntakeSource` (streams/pipeline/runtime.py)."""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from quix_worker.private import StoreOffset

log = logging.getLogger("mynapoint")

#: An intake token: (its partition's assignment count when read, topic, partition, offset).
Token = tuple[int, str, int, int]


def finish(step: Coroutine[Any, Any, None]) -> None:
    """Runs a step's coroutine to its end, here and now.

    Quix calls the dataframes from a plain loop, not an event loop. The steps await only the
    engine's send, which here hands the record to librdkafka without waiting, and an
    uncontended lock: they never suspend. One that did would be a bug of this adapter.
    """
    try:
        step.send(None)
    except StopIteration:
        return
    step.close()
    raise RuntimeError("a pipeline step waited on something under Quix Streams; its sends and "
                       "locks must never wait here")


class QuixSource:
    """Watermarks, committed offsets, seeks and acknowledgements of the input topics."""

    __slots__ = ("consumer", "_store", "_generation", "_start", "_acked", "_tps", "_owned")

    #: Quix's consumer already merges the co-partitioned input topics by record timestamp, and
    #: pauses a partition whose buffer is full itself. It hands nothing of a partition number
    #: while one of its topics has nothing buffered and more to fetch: a partition paused for
    #: intake would stop the others that intake waits for. So intake never pauses here.
    pausable = False

    def __init__(self, consumer: Any, store_offset: StoreOffset) -> None:
        self.consumer = consumer
        self._store = store_offset
        # Per input partition, bumped when it is revoked: a token read before is not acknowledged.
        self._generation: dict[tuple[str, int], int] = {}
        # Where the assigned input partitions start, read at assignment: the group's committed
        # offset, or the partition's first offset if nothing is committed.
        self._start: dict[tuple[str, int], int] = {}
        # The last offset acknowledged per partition in this generation.
        self._acked: dict[tuple[str, int], int] = {}
        self._tps: dict[tuple[str, int], TopicPartition] = {}
        # The input partitions assigned now.
        self._owned: set[tuple[str, int]] = set()

    def _tp(self, topic: str, partition: int) -> TopicPartition:
        tp = self._tps.get((topic, partition))
        if tp is None:
            tp = self._tps[(topic, partition)] = TopicPartition(topic, partition)
        return tp

    def token(self, topic: str, partition: int, offset: int) -> Token:
        """What intake acknowledges the record at `offset` with."""
        return (self._generation.get((topic, partition), 0), topic, partition, offset)

    def highwater(self, topic: str, partition: int) -> int | None:
        # librdkafka's high watermark from its last fetch of the partition; negative before one.
        _, high = self.consumer.get_watermark_offsets(self._tp(topic, partition), cached=True)
        return high if high >= 0 else None

    def start(self, topic: str, partition: int) -> int | None:
        return self._start.get((topic, partition))

    def passed_over(self, topic: str, partition: int, start: int, end: int) -> None:
        pass  # intake acknowledges the record after the hole; Quix commits past the hole then

    async def seek(self, topic: str, partition: int, offset: int,
                   after: int | None = None) -> None:
        # The step runs between polls: no fetch loop is handing a record over meanwhile.
        self.consumer.seek(TopicPartition(topic, partition, offset))

    async def position(self, topic: str, partition: int) -> int | None:
        # Not told: a silent source is then read again after intake's shorter wait, as before.
        # Quix's consumer merges the input topics by timestamp itself; whether its catch-up
        # leaves sources behind the way Faust's does was not measured (docs/ARCHITECTURE.md).
        return None

    def rebalancing(self) -> bool:
        # Quix rebalances inside its consumer's poll, never while a step runs.
        return False

    def acknowledge(self, token: Token) -> None:
        generation, topic, partition, offset = token
        source = (topic, partition)
        if generation != self._generation.get(source, 0):
            return  # read before a revocation: the partition's owner reads it again
        if offset <= self._acked.get(source, -1):
            return  # read again after a seek: already acknowledged
        self._acked[source] = offset
        self._store(topic, partition, offset)

    def pause(self, topic: str, partition: int) -> None:
        raise AssertionError("intake never pauses a Quix source (`pausable`)")

    def resume(self, topic: str, partition: int) -> None:
        raise AssertionError("intake never pauses a Quix source (`pausable`)")

    def owned(self) -> list[tuple[str, int]]:
        return list(self._owned)

    def assigned(self, partitions: list[TopicPartition]) -> None:
        """Reads where newly assigned input partitions start: the group's committed offset, or,
        with nothing committed, the partition's first offset (the low watermark, where the
        consumer starts: `auto.offset.reset` earliest), so that intake notices records missing
        at the very start of a partition (the group would commit past them)."""
        self._owned.update((tp.topic, tp.partition) for tp in partitions)
        if not partitions:
            return
        for tp in self.consumer.committed(partitions, timeout=30):
            source = (tp.topic, tp.partition)
            if tp.offset >= 0:
                self._start[source] = tp.offset
                continue
            self._start.pop(source, None)
            try:
                low, _ = self.consumer.get_watermark_offsets(tp, timeout=30, cached=False)
            except KafkaException as exc:
                log.warning("%s/%s: its first offset could not be read (%s): a record missing at "
                            "its very start goes unnoticed until it is assigned again", tp.topic,
                            tp.partition, exc)
                continue
            if low >= 0:
                self._start[source] = low

    def revoked(self, partitions: list[TopicPartition]) -> set[tuple[str, int]]:
        """Forgets the revoked input partitions; returns them as (topic, partition)."""
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self._owned -= gone
        for source in gone:
            self._generation[source] = self._generation.get(source, 0) + 1
            self._start.pop(source, None)
            self._acked.pop(source, None)
        return gone
