"""`agents.tables.getter` reads a table as `table.get` does (one store lookup instead of two), and
`streams.pipeline.metrics.labelled` counts into the very child `labels()` gives."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import faust
from faust.types import TP
from prometheus_client import CollectorRegistry, Counter

from agents.tables import Changelogs, getter
from streams.pipeline import metrics


def _table() -> tuple[faust.App, object]:
    app = faust.App("test-tables", store="memory://")
    table = app.Table("t", key_type=bytes, value_type=bytes)
    table.key_serializer = "raw"  # type: ignore[attr-defined]
    table.value_serializer = "raw"  # type: ignore[attr-defined]
    return app, table


def test_getter_reads_what_get_reads_and_tells_the_table():
    _, table = _table()
    table.data[b"P1"] = b"\x93\x02\xc0\x80"  # type: ignore[attr-defined]
    seen: list[bytes] = []
    table.on_key_get = seen.append  # type: ignore[attr-defined]
    get = getter(table)
    assert get(b"P1") == table.get(b"P1") == b"\x93\x02\xc0\x80"  # type: ignore[attr-defined]
    assert get(b"P2") is None and table.get(b"P2") is None  # type: ignore[attr-defined]
    assert seen == [b"P1", b"P1", b"P2", b"P2"]


def test_labelled_is_the_child_labels_gives():
    registry = CollectorRegistry()
    counter = Counter("t_labelled", "test", ["a", "b"], registry=registry)
    child = metrics.labelled(counter, "x", "y")
    assert child is counter.labels("x", "y") is metrics.labelled(counter, "x", "y")
    child.inc()
    metrics.labelled(counter, "x", "y").inc(2)
    assert registry.get_sample_value("t_labelled_total", {"a": "x", "b": "y"}) == 3
    assert metrics.labelled(counter, "x", "z") is not child


class FakeSent:
    """What the producer's `send` gives back: a future of the record's metadata."""

    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self.md = SimpleNamespace(topic=topic, partition=partition, offset=offset)
        self.callbacks: list[Any] = []

    def add_done_callback(self, callback: Any) -> None:
        self.callbacks.append(callback)

    def cancelled(self) -> bool:
        return False

    def exception(self) -> None:
        return None

    def result(self) -> Any:
        return self.md

    def deliver(self) -> None:
        for callback in self.callbacks:
            callback(self)


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []
        self.futures: list[FakeSent] = []

    async def send(self, topic: str, key: bytes, value: bytes, partition: int,
                   timestamp: Any, headers: Any) -> FakeSent:
        self.sent.append((topic, key, value, partition, timestamp, headers))
        fut = FakeSent(topic, partition, 100 + len(self.futures))
        self.futures.append(fut)
        return fut


class FakeManager:
    def __init__(self) -> None:
        self.on_commit: list[tuple[Any, Any, int]] = []

    def persist_offset_on_commit(self, store: Any, tp: Any, offset: int) -> None:
        self.on_commit.append((store, tp, offset))


def _changelogged(in_transaction: bool) -> tuple[Any, Any, Changelogs, list[Any]]:
    _, table = _table()
    persisted: list[tuple[Any, int]] = []
    table.data.set_persisted_offset = lambda tp, offset: persisted.append((tp, offset))  # type: ignore[attr-defined]
    table.partition_for_key = lambda key: 3  # type: ignore[attr-defined]  # the event's
    app = SimpleNamespace(producer=FakeProducer(), tables=FakeManager(),
                          in_transaction=in_transaction)
    return app, table, Changelogs(app), persisted


def _deliver(*batches: list[FakeSent]) -> None:
    """Delivers each batch's records together, as the producer does, one loop turn apart."""

    async def run() -> None:
        for batch in batches:
            for fut in batch:
                fut.deliver()
            await asyncio.sleep(0)

    asyncio.run(run())


def test_a_write_goes_to_the_store_at_once_and_to_the_changelog_on_send():
    app, table, changelogs, persisted = _changelogged(in_transaction=False)
    seen: list[bytes] = []
    table.on_key_get = seen.append  # type: ignore[attr-defined]
    read, write, changelog = changelogs.store(table)
    write(b"P1", b"v1")
    write(b"P1", b"v2")
    write(b"P2", b"w1")
    # The store has the values before anything is sent, and reads see them.
    assert read(b"P1") == b"v2" and read(b"P2") == b"w1" and seen == [b"P1", b"P2"]
    assert app.producer.sent == []
    asyncio.run(changelog())  # what a step awaits after its writes
    topic = table.changelog_topic.get_topic_name()  # type: ignore[attr-defined]
    assert topic == "test-tables-t-changelog"
    # Every write, in order, to the partition Faust gives the key (the current event's).
    assert app.producer.sent == [(topic, b"P1", b"v1", 3, None, None),
                                 (topic, b"P1", b"v2", 3, None, None),
                                 (topic, b"P2", b"w1", 3, None, None)]
    asyncio.run(changelogs.send())  # nothing written since: nothing sent again
    assert len(app.producer.sent) == 3
    # Once delivered, the changelog offset is recorded in the store, as Faust records it: the
    # highest of a batch delivered together, once.
    assert persisted == []
    _deliver(app.producer.futures)
    assert persisted == [(TP(topic, 3), 102)]
    assert app.tables.on_commit == []


def test_each_delivered_batch_records_its_highest_offset_per_partition():
    app, table, changelogs, persisted = _changelogged(in_transaction=False)
    partitions = iter([3, 3, 1, 3])
    table.partition_for_key = lambda key: next(partitions)  # type: ignore[attr-defined]
    _, write, changelog = changelogs.store(table)
    for value in (b"a", b"b", b"c", b"d"):
        write(b"P", value)
    asyncio.run(changelog())
    first, second, third, fourth = app.producer.futures  # offsets 100 to 103
    topic = table.changelog_topic.get_topic_name()  # type: ignore[attr-defined]
    # Delivered out of order within a batch: the highest offset counts, per partition.
    _deliver([second, first, third], [fourth])
    assert persisted == [(TP(topic, 3), 101), (TP(topic, 1), 102), (TP(topic, 3), 103)]


def test_in_the_exactly_once_mode_the_offset_is_recorded_once_delivered_too():
    # The records are sent by the plain producer, outside any transaction: Faust's deferral to
    # the commit would never record them (see agents/tables.py).
    app, table, changelogs, persisted = _changelogged(in_transaction=True)
    _, write, _ = changelogs.store(table)
    write(b"P1", b"v1")
    asyncio.run(changelogs.send())
    _deliver(app.producer.futures)
    topic = table.changelog_topic.get_topic_name()  # type: ignore[attr-defined]
    assert persisted == [(TP(topic, 3), 100)]
    assert app.tables.on_commit == []  # type: ignore[attr-defined]


def test_the_changelog_records_are_the_ones_the_table_would_send():
    # What `table[key] = value` (`Table.on_key_set`) hands to the changelog topic: the same
    # key and value bytes (raw serializers), to the partition of `partition_for_key`.
    _, table = _table()
    calls: list[tuple[Any, ...]] = []
    table.partition_for_key = lambda key: 3  # type: ignore[attr-defined]
    table.changelog_topic.send_soon = (  # type: ignore[attr-defined]
        lambda **kw: calls.append((kw["key"], kw["value"], kw["partition"], kw["key_serializer"],
                                   kw["value_serializer"]))
        or SimpleNamespace(message=SimpleNamespace(partition=kw["partition"])))
    table[b"P1"] = b"v1"  # type: ignore[index]
    assert calls == [(b"P1", b"v1", 3, "raw", "raw")]


def test_faust_records_changelog_offsets_as_changelogs_mirrors():
    # Pins what `Changelogs` mirrors, and why it does not defer in the exactly-once mode: a Faust
    # upgrade that records changelog offsets another way, or whose commit does record deferred
    # ones, fails here, not in a recovery that starts at the wrong offset.
    import inspect

    from faust.stores.base import Store as BaseStore
    from faust.tables.base import Collection
    from faust.tables.manager import TableManager
    from faust.transport.consumer import Consumer

    sent = inspect.getsource(Collection._on_changelog_sent)
    assert "self.app.in_transaction" in sent
    assert "self.app.tables.persist_offset_on_commit(" in sent
    assert "self.data.set_persisted_offset(res.topic_partition, res.offset)" in sent
    assert callable(BaseStore.set_persisted_offset)
    # Deferred offsets are kept by changelog partition, and looked up by the partitions the
    # consumer commits (its inputs), so they are never found.
    assert "self._pending_persisted_offsets[tp] = (store, offset)" in inspect.getsource(
        TableManager.persist_offset_on_commit)
    assert "self.on_commit_tp(tp)" in inspect.getsource(TableManager.on_commit)
    assert "self._pending_persisted_offsets.get(tp)" in inspect.getsource(
        TableManager.on_commit_tp)
    assert "self.app.tables.on_commit(committable_offsets)" in inspect.getsource(
        Consumer._commit_offsets)
    on_key_set = inspect.getsource(faust.Table.on_key_set)
    assert "self.send_changelog(self.partition_for_key(key), key, value)" in on_key_set
