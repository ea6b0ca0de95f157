"""The Faust tables as the pipeline's steps see them: a read with one store lookup, and a write
whose changelog record goes straight through the app's producer.

Reads. `table.get(key)` on a Faust table goes through `FastUserDict.__getitem__`, which asks the
store `key in store` and then `store[key]`: on the RocksDB store, two reads of the same key for
every key present (the ledger reads the person's record and timeline head for every journal
entry). `getter(table)` reads the table's store (`Collection.data`, Faust's public "underlying
table storage") once, and still notifies the table of the read (`on_key_get`, so Faust's own
sensors count it as before). Same value, same `None` for a missing key, for tables without a
default (every table of this worker); the store takes the partition from the current event
either way.

Writes. `table[key] = value` (`Table.on_key_set`) wraps the changelog record in a FutureMessage,
queues it in Faust's send buffer, publishes it from a background task through `Topic` and calls
the table back to record the changelog offset: about 80 us per write on this machine, six times
a store put plus a producer send (`bench/bench_pipeline.py --skeleton 2 2direct`), and the worker
writes 2.4 table values per event. `Changelogs.store(table)` writes what `on_key_set` writes,
the same way but without the detour: the value into the table's store, and the changelog record
(key and value as stored, the partition Faust gives it, `Table.partition_for_key`) through the
app's producer right after the step's writes for the record, before its other sends
(`Changelogs.send`, the stores' `changelog`; awaited again by the agent before it takes the next
record), so before Faust acknowledges the record; the producer is flushed before any offset is
committed, and at a rebalance. Once delivered, the changelog offset is recorded in the table's
store (`Store.set_persisted_offset`, what `Table._on_changelog_sent` calls), so that recovery after
a restart starts where the local store is. Faust's recovery, standbys and rebalancing read and
restore these changelogs as their own: the records are the same.

The recorded offset: once per delivered batch, not once per record. The producer resolves a
batch's records together; their callbacks note the highest offset per changelog partition, and
one call scheduled after them records it (a RocksDB put per partition and batch instead of one
per record). In the exactly-once mode too: these records go through the app's plain producer,
outside any transaction, so a delivered one stays. (Faust defers its own, transactional, ones to
the commit, `TableManager.persist_offset_on_commit`, by changelog partition; but its commit calls
`TableManager.on_commit` with the input partitions it commits, so they are never recorded, and an
exactly-once worker's recovery would read every changelog from its start. Faust's recovery accepts
a recorded offset in that mode only with `faust_private.recover_to_the_end_in_exactly_once`.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any

from faust.types import TP

from agents.outputs import delivered
from streams.pipeline.runtime import Store


def getter(table: Any) -> Callable[[bytes], bytes | None]:
    """`table.get` (for a table without a default), reading its store once."""
    on_key_get = table.on_key_get

    def get(key: bytes) -> bytes | None:
        on_key_get(key)
        value: bytes | None = table.data.get(key)
        return value

    return get


class Changelogs:
    """One agent's table writes: values into the tables' stores at once, their changelog records
    sent by `send()`, which the steps await right after their writes (`Store.changelog`), and the
    agent again after each record (for a step that raised half-way)."""

    __slots__ = ("app", "pending", "offsets")

    def __init__(self, app: Any) -> None:
        self.app = app
        #: (table, changelog topic, partition, key, value) written since the last `send()`.
        self.pending: list[tuple[Any, str, int, bytes, bytes]] = []
        #: (changelog topic, partition) -> (the table's store, the highest offset delivered and
        #: not recorded yet); recorded by `_record_offsets`.
        self.offsets: dict[tuple[str, int], tuple[Any, int]] = {}

    def store(self, table: Any) -> Store:
        """The table as the steps see it: `getter(table)`, and a whole-value write."""
        data = table.data
        topic = table.changelog_topic.get_topic_name()
        partition_for_key = table.partition_for_key  # the current event's partition
        pending = self.pending

        def write(key: bytes, value: bytes) -> None:
            partition = partition_for_key(key)
            data[key] = value
            pending.append((table, topic, partition, key, value))

        return Store(getter(table), write, self.send)

    async def send(self) -> None:
        """Sends the changelog records of the writes made since the last call, in their order."""
        if not self.pending:
            return
        writes, self.pending[:] = list(self.pending), []
        send = self.app.producer.send
        for table, topic, partition, key, value in writes:
            sent = await send(topic, key, value, partition, None, None)
            sent.add_done_callback(partial(self._on_delivered, table.data))

    def _on_delivered(self, data: Any, sent: Any) -> None:
        delivered(sent)  # a failed send stops the worker before anything is committed past it
        if sent.cancelled():
            return
        md = sent.result()
        where = (md.topic, md.partition)
        noted = self.offsets
        if not noted:
            # After the callbacks of the records delivered with this one, already scheduled.
            asyncio.get_running_loop().call_soon(self._record_offsets)
        before = noted.get(where)
        if before is None or md.offset > before[1]:
            noted[where] = (data, md.offset)

    def _record_offsets(self) -> None:
        noted, self.offsets = self.offsets, {}
        for (topic, partition), (data, offset) in noted.items():
            data.set_persisted_offset(TP(topic, partition), offset)
