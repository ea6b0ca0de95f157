"""Faust's private internals the worker relies on, all reached through agents/faust_private.py:
no terminal spinner turning the root logger to DEBUG, the consumer's committed offsets (intake and
the lag gauge), the RocksDB databases of active partitions (table sizes), the web app's middleware
list (the status API's guard), the transaction manager of the exactly-once mode (flushed before
it commits), the consumer's resume and seek after a rebalance (stream partitions sought before
they are fetched), the end of a changelog that table recovery reads to in the exactly-once mode,
the record the fetch loop is handing over (a seek answering it waits for it), the assignor's
check of the worker's address (a static member back under another one rebalances the group).
Each name is pinned here so a Faust upgrade fails a test first.

The spinner: at WARNING, Faust's trap made every `logger.debug` on the hot path build a record."""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any

import faust
import pytest

from agents.faust_private import (
    active_rocksdb,
    add_middleware,
    committed_offset,
    handed_over,
    quiet_worker,
)


@pytest.fixture
def app():
    return faust.App("mynapoint-logging-test", broker="kafka://127.0.0.1:1", store="memory://")


def fresh_logger() -> logging.Logger:
    logger = logging.Logger("root-under-test", level=logging.WARNING)
    logger.addHandler(logging.NullHandler())
    return logger


def test_plain_faust_worker_sets_the_root_logger_to_debug_at_warning(app):
    # The trap itself, so the test below can fail if Faust changes how it sets up the spinner.
    logger = fresh_logger()
    faust.Worker(app, loglevel="warning", quiet=True).on_setup_root_logger(logger, logging.WARNING)
    assert logger.level == logging.DEBUG


@pytest.mark.parametrize("level", [logging.WARNING, logging.ERROR, logging.INFO])
def test_our_worker_leaves_the_root_logger_at_its_level(app, level):
    logger = fresh_logger()
    quiet_worker(app, logging.getLevelName(level).lower()).on_setup_root_logger(logger, level)
    assert logger.level == logging.WARNING
    assert len(logger.handlers) == 1


def test_faust_consumer_still_keeps_committed_offsets_where_intake_reads_them(app):
    # Intake's lag-aware idleness and the lag gauge read the consumer's private
    # `_committed_offset` (agents/source.py `FaustSource.committed`, agents/metrics.py): a Faust
    # upgrade that renames it must fail here, not silently make every source look idle or lag unknown.
    consumer = app.consumer
    assert isinstance(consumer._committed_offset, dict)
    assert callable(consumer.highwater)
    assert committed_offset(app, ("mynapoint.cards", 0)) is None
    # And `_read_offset`, what the fetch loop handed to the streams (`FaustSource.position`).
    assert handed_over(app, ("mynapoint.cards", 0)) is None


def test_rocksdb_tables_expose_their_active_databases(tmp_path):
    app = faust.App("mynapoint-store-test", broker="kafka://127.0.0.1:1", store="rocksdb://",
                    datadir=str(tmp_path))
    table = app.Table("t", partitions=1, key_type=bytes, value_type=bytes)
    store = table.data
    assert callable(store._dbs_for_actives) and store.use_rocksdict
    assert active_rocksdb(table) == []  # no partition assigned yet
    # It asks the app's assignor, which it would make: `active_rocksdb` waits for Faust to.
    assert "self.app.assignor.assigned_actives()" in inspect.getsource(type(store)._dbs_for_actives)


def test_memory_tables_have_no_rocksdb(app):
    assert active_rocksdb(app.Table("t", partitions=1)) is None


def test_middleware_lands_on_faust_web_app(app):
    async def mw(request, handler):  # pragma: no cover - never called
        return await handler(request)

    add_middleware(app, mw)
    assert app.web.web_app.middlewares[-1] is mw


def test_faust_marks_a_rebalance_before_it_forgets_the_revoked_partitions(app):
    # Intake acknowledges nothing while `app.rebalancing` is set (streams/pipeline/intake.py
    # `Intake._acknowledge`, through agents/source.py `FaustSource.rebalancing`): that only helps if Faust sets it before the consumer drops the revoked
    # partitions' acknowledgement bookkeeping, which it does first thing in the rebalance listener.
    import inspect

    from faust.transport.drivers.aiokafka import ConsumerRebalanceListener

    source = inspect.getsource(ConsumerRebalanceListener.on_partitions_revoked)
    assert source.index("on_rebalance_start()") < source.index(".on_partitions_revoked(")
    assert app.rebalancing is False
    app.on_rebalance_start()
    assert app.rebalancing is True
    app.on_rebalance_end()
    assert app.rebalancing is False


def test_faust_commits_a_transaction_without_flushing_the_app_producer():
    # Why `flush_before_transactional_commits` exists: Faust flushes `app.producer` before an
    # at-least-once commit only. If this fails, Faust flushes in both modes now: drop ours.
    import inspect

    from faust.transport.consumer import Consumer, TransactionManager

    source = inspect.getsource(Consumer._commit_offsets)
    in_transaction, at_least_once = source.split("if self.in_transaction:")[1].split("else:")[:2]
    assert "self.transactions.commit(" in in_transaction and "flush" not in in_transaction
    assert "self.app.producer.flush()" in at_least_once
    assert "flush" not in inspect.getsource(TransactionManager.commit)


def test_exactly_once_commits_flush_the_producer_first(monkeypatch):
    import asyncio

    from faust.types import TP

    from agents.faust_private import flush_before_transactional_commits

    app = faust.App("mynapoint-eos-test", broker="kafka://127.0.0.1:1", store="memory://",
                    processing_guarantee="exactly_once")
    flush_before_transactional_commits(app)
    calls: list[object] = []

    class Producer:
        async def flush(self) -> None:
            calls.append("flush")

        async def commit_transactions(self, by_tid, group_id, start_new_transaction=True):
            calls.append(("commit", {t: dict(o) for t, o in by_tid.items()}, group_id))

    monkeypatch.setattr(app.assignor, "group_for_topic", lambda topic: 0)
    manager = app.transport.create_transaction_manager(consumer=None, producer=Producer())
    tp = TP("mynapoint.journal", 3)
    assert asyncio.run(manager.commit({tp: 42})) is True
    assert calls == ["flush", ("commit", {"mynapoint-eos-test-0-3": {tp: 42}},
                               "mynapoint-eos-test")]


def test_the_worker_app_flushes_before_transactional_commits(tmp_path):
    from agents.app import create_app
    from agents.settings import WorkerSettings

    app = create_app(WorkerSettings(data_dir=str(tmp_path), processing_guarantee="exactly_once"))
    assert app.consumer.transactions.commit.__qualname__.startswith(
        "flush_before_transactional_commits.")


def test_faust_resumes_the_stream_partitions_before_it_seeks_them():
    # Why `seek_before_resuming_streams` exists: Faust's recovery resumes the stream partitions,
    # then seeks them to their committed offsets, which resets the consumer's read offsets; a
    # record fetched in between makes the next one look like a jump, whose offsets Faust counts
    # as acknowledged. If this fails, Faust seeks first now: drop ours.
    import inspect

    from faust.tables.recovery import Recovery
    from faust.transport.consumer import Consumer

    for method in (Recovery._resume_streams, Recovery.on_recovery_completed):
        source = inspect.getsource(method)
        assert source.index("consumer.resume_partitions(") < source.index("consumer.perform_seek()")
    seek = inspect.getsource(Consumer.perform_seek)
    assert "read_offset.update(" in seek and "seek_to_committed()" in seek
    drain = inspect.getsource(Consumer._drain_messages)
    assert "self._add_gap(tp, r_offset + 1, offset)" in drain


def test_stream_partitions_are_fetched_only_once_sought_to_their_committed_offsets():
    import asyncio

    from faust.types import TP

    from agents.faust_private import seek_before_resuming_streams

    app = faust.App("mynapoint-seek-test", broker="kafka://127.0.0.1:1", store="memory://")
    seek_before_resuming_streams(app)
    table = app.Table("persons", partitions=4)
    consumer = app.consumer
    journal, changelog = TP("mynapoint.journal", 2), TP(table.changelog_topic.get_topic_name(), 2)
    assigned = {journal, changelog}
    consumer.assignment = lambda: assigned
    consumer.pause_partitions(assigned)
    active = consumer._get_active_partitions()
    seen: list[set[TP]] = []

    async def seek_to_committed() -> dict[TP, int]:
        seen.append(set(active))  # what the fetcher could fetch while the seek runs
        return {journal: 41}

    consumer.seek_to_committed = seek_to_committed
    # Recovery resumes the stream partitions (and any changelog one), then awaits the seek.
    consumer.resume_partitions({journal, changelog})
    assert active == {changelog}  # the changelog at once; the journal waits for the seek
    asyncio.run(consumer.perform_seek())
    assert seen == [{changelog}]
    assert active == {journal, changelog}
    assert consumer._read_offset[journal] == 41


def _held_journal(seek_to_committed):
    """A worker-like app's consumer, assigned one journal partition that is paused (as during a
    rebalance), seeking with `seek_to_committed(app)`; with the consumer's live set of active
    partitions."""
    from faust.types import TP

    from agents.faust_private import seek_before_resuming_streams

    app = faust.App("mynapoint-seek-test", broker="kafka://127.0.0.1:1", store="memory://")
    seek_before_resuming_streams(app)
    consumer = app.consumer
    journal = TP("mynapoint.journal", 0)
    consumer.assignment = lambda: {journal}
    consumer.pause_partitions({journal})
    consumer.seek_to_committed = lambda: seek_to_committed(app)
    return consumer, journal, consumer._get_active_partitions()


def test_a_seek_that_began_before_a_partition_was_resumed_does_not_release_it():
    # Faust also seeks from `getmany` when the flow stopped under it, at any moment.
    import asyncio

    async def run() -> None:
        started, finish = asyncio.Event(), asyncio.Event()

        async def slow_seek(app) -> dict:
            started.set()
            await finish.wait()
            return {}

        consumer, journal, active = _held_journal(slow_seek)
        earlier = asyncio.ensure_future(consumer.perform_seek())
        await started.wait()
        consumer.resume_partitions({journal})
        finish.set()
        await earlier
        assert journal not in active  # that seek may have run before the resume
        await consumer.perform_seek()
        assert journal in active

    asyncio.run(run())


def test_the_worker_app_seeks_before_it_resumes_streams(tmp_path):
    from agents.app import create_app
    from agents.settings import WorkerSettings

    app = create_app(WorkerSettings(data_dir=str(tmp_path)))
    made = [cls.__qualname__ for cls in type(app.consumer).__mro__]
    assert "seek_before_resuming_streams.<locals>.SeekFirstConsumer" in made
    assert "recover_to_the_end_in_exactly_once.<locals>.EndOffsetsConsumer" in made
    assert "track_handovers.<locals>.HandoverConsumer" in made
    produces = [cls.__qualname__ for cls in type(app.producer).__mro__]
    assert "declare_only_missing_topics.<locals>.DeclaringProducer" in produces


def test_faust_asks_to_create_a_topic_its_producer_does_not_know_then_refreshes_its_metadata():
    # Pinned: what `declare_only_missing_topics` stands in front of. Faust's transport skips the
    # CreateTopics of a topic in the producer client's metadata, and its producer refreshes that
    # metadata after a declaration; aiokafka's client starts knowing no topic, and
    # `fetch_all_metadata` asks for every topic (none named: nothing is created on a lookup).
    import inspect

    from aiokafka.client import AIOKafkaClient
    from faust.transport.drivers.aiokafka import Producer, Transport

    assert "if topic in client.cluster.topics():" in inspect.getsource(
        Transport._really_create_topic)
    assert "await producer.client.force_metadata_update()" in inspect.getsource(
        Producer.create_topic)
    assert "MetadataRequest([])" in inspect.getsource(AIOKafkaClient.bootstrap)
    assert "self._metadata_update(cluster_md, None)" in inspect.getsource(
        AIOKafkaClient.fetch_all_metadata)


@pytest.mark.parametrize(("known", "on_cluster", "allowed", "creates", "refreshes"), [
    (False, True, True, False, True),    # exists, not known yet: not created, metadata refreshed
    (True, True, True, True, False),     # known: Faust's own path (which skips it)
    (False, False, True, True, False),   # missing: declared as before
    (False, True, False, True, False),   # declarations off: Faust's own path (which logs)
])
def test_faust_declares_a_topic_only_when_the_cluster_lacks_it(known, on_cluster, allowed,
                                                               creates, refreshes):
    from types import SimpleNamespace

    from agents.faust_private import declare_only_missing_topics

    topic = "mynapoint-persons-changelog"
    created: list[str] = []
    refreshed: list[bool] = []

    class Cluster:
        def __init__(self, names: set[str]) -> None:
            self.names = names

        def topics(self) -> set[str]:
            return self.names

    class Client:
        cluster = Cluster({topic} if known else set())

        async def fetch_all_metadata(self) -> Cluster:
            return Cluster({topic} if on_cluster else {"other"})

        async def force_metadata_update(self) -> bool:
            refreshed.append(True)
            return True

    class FaustProducer:
        def __init__(self) -> None:
            self.app = SimpleNamespace(conf=SimpleNamespace(topic_allow_declare=allowed))

        def _ensure_producer(self) -> SimpleNamespace:
            return SimpleNamespace(client=Client())

        async def create_topic(self, topic: str, partitions: int, replication: int,
                               **kwargs: object) -> None:
            created.append(topic)

    app = SimpleNamespace(transport=SimpleNamespace(Producer=FaustProducer))
    declare_only_missing_topics(app)
    asyncio.run(app.transport.Producer().create_topic(topic, 4, 1, config={}))
    assert created == ([topic] if creates else [])
    assert refreshed == ([True] if refreshes else [])


def test_the_consumer_thread_fetches_the_partitions_active_when_the_fetch_runs(monkeypatch):
    # aiokafka's `Fetcher.fetched_records(partitions)` returns every partition's records for an
    # empty `partitions`; Faust would then drop those of paused partitions after aiokafka moved
    # past them. Pinned: Faust hands its live set to `_fetch_records` on the consumer thread.
    import asyncio
    import inspect

    from faust.transport.consumer import Consumer
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
    from faust.types import TP

    from agents.faust_private import seek_before_resuming_streams

    assert "active_partitions = self._get_active_partitions()" in inspect.getsource(
        Consumer._wait_next_records)
    calls: list[object] = []

    async def fetched(self, consumer, active_partitions, timeout=None, max_records=None):
        calls.append(active_partitions)
        return {"records": True}

    monkeypatch.setattr(AIOKafkaConsumerThread, "_fetch_records", fetched)
    app = faust.App("mynapoint-fetch-test", broker="kafka://127.0.0.1:1", store="memory://")
    seek_before_resuming_streams(app)
    thread = app.consumer._new_consumer_thread()
    live = {TP("mynapoint.journal", 1)}
    assert asyncio.run(thread._fetch_records(None, live, timeout=1.0)) == {"records": True}
    assert calls == [frozenset(live)]
    live.clear()
    assert calls == [frozenset({TP("mynapoint.journal", 1)})]  # a copy, not the live set
    assert asyncio.run(thread._fetch_records(None, live, timeout=1.0)) == {}
    assert len(calls) == 1  # nothing fetched for no partition


def test_a_seek_overtaken_by_a_new_rebalance_leaves_the_partitions_to_that_rebalance():
    import asyncio

    async def seek_during_a_rebalance(app) -> dict:
        app.consumer_generation_id += 1  # a new rebalance began while this seek ran
        return {}

    consumer, journal, active = _held_journal(seek_during_a_rebalance)
    consumer.resume_partitions({journal})
    asyncio.run(consumer.perform_seek())
    assert journal not in active


def test_faust_still_keeps_what_created_consumer_and_created_assignor_read():
    import inspect

    import faust

    app = faust.App("mynapoint-pin")
    assert app._consumer is None  # noqa: SLF001 - nothing made yet
    assert "self._consumer = self._new_consumer()" in inspect.getsource(faust.App.consumer.fget)
    assert callable(faust.App.assignor.is_set) and not faust.App.assignor.is_set(app)


def test_pausing_runs_on_the_consumer_thread_and_only_for_assigned_partitions():
    # aiokafka's pause makes a future on the running loop: the consumer thread's, never the
    # worker's. `pause_fetching` hands the change to that loop, which runs the calls in order (the
    # caller's last wish stays), and leaves partitions not assigned (a rebalance) alone.
    from aiokafka import TopicPartition

    from agents.faust_private import pause_fetching

    class Consumer:
        def __init__(self) -> None:
            self.calls: list[tuple[str, TopicPartition]] = []

        def assignment(self) -> set[TopicPartition]:
            return {TopicPartition("cards", 0)}

        def pause(self, tp: TopicPartition) -> None:
            self.calls.append(("pause", tp))

        def resume(self, tp: TopicPartition) -> None:
            self.calls.append(("resume", tp))

    class Loop:
        def __init__(self) -> None:
            self.scheduled: list[Any] = []

        def call_soon_threadsafe(self, fun: Any, *args: Any) -> None:
            self.scheduled.append((fun, args))

    class Thread:
        thread_loop = Loop()
        _consumer = Consumer()

    class App:
        class consumer:  # noqa: N801
            _thread = Thread()

    for tp in (("cards", 0), ("cards", 1)):
        pause_fetching(App, tp, True)
    pause_fetching(App, ("cards", 0), False)  # resumed before the thread ran
    assert Thread._consumer.calls == []  # nothing on the caller's thread
    for fun, args in Thread.thread_loop.scheduled:
        fun(*args)
    # In the order asked, so cards/0 ends resumed; cards/1 is not assigned: left alone.
    assert Thread._consumer.calls == [("pause", TopicPartition("cards", 0)),
                                      ("resume", TopicPartition("cards", 0))]


def test_faust_consumer_thread_keeps_its_loop_and_aiokafka_consumer_where_pausing_reads():
    import faust
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    app = faust.App("mynapoint-pin-pause", broker="kafka://127.0.0.1:1", store="memory://")
    thread = app.consumer._thread  # noqa: SLF001
    assert isinstance(thread, AIOKafkaConsumerThread)
    assert thread._consumer is None  # noqa: SLF001 - made when the thread starts
    assert callable(thread.thread_loop.call_soon_threadsafe)
    assert "self._consumer = " in inspect.getsource(AIOKafkaConsumerThread)


def test_faust_recovers_exactly_once_tables_to_the_mark_of_the_last_fetch():
    # Why `recover_to_the_end_in_exactly_once` exists: in that mode the end of a changelog for
    # recovery is the consumer's last stable offset of its last fetch (None before one), and
    # recovery turns None into -1, "nothing to read".
    from faust.tables.recovery import Recovery
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    highwaters = inspect.getsource(AIOKafkaConsumerThread._highwaters)
    assert "if self.consumer.in_transaction:" in highwaters
    assert "consumer.last_stable_offset(tp)" in highwaters
    assert "value - 1 if value is not None else -1" in inspect.getsource(
        Recovery._build_highwaters)


@pytest.mark.parametrize("in_transaction", [True, False])
def test_the_consumer_thread_gives_recovery_the_end_offsets_in_both_modes(monkeypatch,
                                                                          in_transaction):
    import asyncio

    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
    from faust.types import TP

    from agents.faust_private import recover_to_the_end_in_exactly_once

    changelog = TP("mynapoint-persons-changelog", 2)

    class Consumer:  # aiokafka's, as the consumer thread holds it
        def last_stable_offset(self, tp):
            return None  # no fetch yet

        async def end_offsets(self, partitions):
            return {tp: 42 for tp in partitions}

    monkeypatch.setattr(AIOKafkaConsumerThread, "_ensure_consumer", lambda self: Consumer())
    app = faust.App("mynapoint-ends-test", broker="kafka://127.0.0.1:1", store="memory://")
    recover_to_the_end_in_exactly_once(app)
    thread = app.consumer._new_consumer_thread()
    app.consumer.in_transaction = in_transaction
    assert thread.consumer is app.consumer
    assert asyncio.run(thread._highwaters([changelog])) == {changelog: 42}


def test_commits_pass_no_record_a_step_reads_again_and_pass_the_offsets_it_found_empty(app):
    # Faust's fetch loop took the jump from 222 to 336 for a gap (`_add_gap`): acknowledging
    # 336 lets a commit pass 223 to 335. A step that reads them again forgets that gap.
    import asyncio

    from faust.types import TP

    from agents.faust_private import forget_gaps, pass_over

    consumer = app.consumer

    def jumped(partition: int) -> TP:
        tp = TP("mynapoint.journal", partition)
        consumer._committed_offset[tp] = 223
        asyncio.run(consumer._add_gap(tp, 223, 336))
        consumer._acked[tp].append(336)  # acknowledged (`Consumer.ack`)
        return tp

    assert consumer._new_offset(jumped(0)) == 337  # what Faust would commit
    tp = jumped(1)
    forget_gaps(app, tp, 223)
    assert consumer._new_offset(tp) is None  # nothing past 223 before it is handled
    consumer._acked[tp].extend(range(223, 336))
    assert consumer._new_offset(tp) == 337
    # 400 to 409 hold no records (aborted transactions): commits pass them once told.
    tp = TP("mynapoint.journal", 2)
    consumer._committed_offset[tp] = 400
    consumer._acked[tp].extend([410, 411])
    assert consumer._new_offset(tp) is None
    pass_over(app, tp, 400, 410)
    assert consumer._new_offset(tp) == 412
    forget_gaps(app, TP("mynapoint.journal", 3), 0)  # no gaps noted: nothing to do


def _assignment_made_for(assignor: Any, url: str) -> Any:
    """What the broker hands a static member back: the assignment made for it, carrying `url`
    (here no partitions, and the group's view of the addresses)."""
    import zlib

    from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
    from faust.assignor.client_assignment import ClientAssignment, ClientMetadata

    metadata = ClientMetadata(assignment=ClientAssignment(actives={}, standbys={}), url=url,
                              changelog_distribution={url: {}}, external_topic_distribution={},
                              topic_groups={})
    return ConsumerProtocolMemberAssignment(assignor.version, [],
                                            zlib.compress(metadata.dumps()))


def test_faust_asserts_that_an_assignment_carries_the_workers_own_address():
    # Why `rejoining_assignor` exists: a static member restarted under another address is handed
    # the assignment made for its old one, and Faust's assertion stops aiokafka's coordinator.
    from faust.assignor import PartitionAssignor

    assert "assert metadata.url == str(self._url)" in inspect.getsource(
        PartitionAssignor.on_assignment)
    app = faust.App("mynapoint-pin-url", broker="kafka://127.0.0.1:1", store="memory://",
                    canonical_url="http://w1:6066")
    with pytest.raises(AssertionError):
        app.assignor.on_assignment(_assignment_made_for(app.assignor, "http://w1:7777"))


class _Coordinator:
    def __init__(self) -> None:
        self.rejoins = 0

    def request_rejoin(self) -> None:
        self.rejoins += 1


def _worker_app(url: str) -> tuple[Any, _Coordinator]:
    from agents.faust_private import rejoining_assignor

    app = faust.App("mynapoint-rejoin", broker="kafka://127.0.0.1:1", store="memory://",
                    canonical_url=url, PartitionAssignor=rejoining_assignor())
    coordinator = _Coordinator()

    class Consumer:  # what `_ensure_consumer()` gives: aiokafka's consumer
        _coordinator = coordinator

    app.consumer._thread._ensure_consumer = lambda: Consumer  # noqa: SLF001
    return app, coordinator


def test_aiokafka_still_has_what_the_rejoining_assignor_calls():
    from aiokafka.consumer.group_coordinator import GroupCoordinator
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    assert "self._rejoin_needed_fut.set_result(None)" in inspect.getsource(
        GroupCoordinator.request_rejoin)
    assert callable(AIOKafkaConsumerThread._ensure_consumer)  # noqa: SLF001


def test_an_assignment_kept_for_another_address_is_taken_and_the_group_rebalanced():
    app, coordinator = _worker_app("http://w1:6066")
    app.assignor.on_assignment(_assignment_made_for(app.assignor, "http://w1:7777"))
    assert coordinator.rejoins == 1
    # The next JoinGroup announces the worker's own address again.
    assert app.assignor._metadata.url == "http://w1:6066"  # noqa: SLF001


def test_an_assignment_for_the_workers_own_address_asks_for_no_rebalance():
    app, coordinator = _worker_app("http://w1:6066")
    app.assignor.on_assignment(_assignment_made_for(app.assignor, "http://w1:6066"))
    assert coordinator.rejoins == 0


def test_the_worker_app_uses_the_rejoining_assignor(tmp_path):
    from agents.app import create_app
    from agents.settings import WorkerSettings

    app = create_app(WorkerSettings(data_dir=str(tmp_path)))
    assert type(app.assignor).__name__ == "RejoiningAssignor"


def test_faust_streams_acknowledge_the_records_they_skip_in_a_rebalance_untracked():
    # Why `ack_only_what_a_stream_took` exists: in the pure-Python iterator the skip (stale
    # generation, or flow control off) breaks out before the record is tracked, and the `finally`
    # acknowledges it anyway. The Cython iterator, the one used here, returns no event for a
    # skipped record, so it acknowledges none.
    from pathlib import Path

    import faust._cython as compiled
    from faust.streams import Stream

    source = inspect.getsource(Stream._py_aiter)  # noqa: SLF001
    skip = source.index("message.generation_id != self.app.consumer_generation_id")
    assert skip < source.index("message.tracked = True")
    assert "if event is not None and (do_ack or value is skipped_value):" in source
    # The Cython iterator, the one `Stream.__aiter__` takes when it is built (it is here), skips
    # before tracking too, but without the event, and acknowledges only an event.
    assert "_CStreamIterator is not None" in inspect.getsource(Stream.__aiter__)
    pyx = (Path(compiled.__file__).parent / "streams.pyx").read_text()
    skip = pyx.index("message.generation_id != self.app.consumer_generation_id")
    assert skip < pyx.index("return None, self._skipped_value, stream_state") < pyx.index(
        "message.tracked = True")
    assert "if do_ack and event is not None:" in pyx


def _consumer_message(offset: int) -> Any:
    from faust.types.tuples import ConsumerMessage

    return ConsumerMessage("mynapoint.payments", 2, offset, 0.0, 0, None, b"P1", b"{}", None)


@pytest.mark.parametrize("patched", [True, False])
def test_a_record_no_stream_took_is_not_acknowledged(patched):
    from faust.types import TP

    from agents.faust_private import ack_only_what_a_stream_took

    app = faust.App(f"mynapoint-ack-{patched}", broker="kafka://127.0.0.1:1",
                    store="memory://")
    if patched:
        ack_only_what_a_stream_took(app)
    app.topics._acking_topics.add("mynapoint.payments")  # noqa: SLF001 - a topic an agent reads
    consumer = app.consumer
    tp = TP("mynapoint.payments", 2)
    # Faust keeps the offset of the last record committed: 11 is the next one.
    consumer._committed_offset[tp] = 10  # noqa: SLF001
    skipped, taken = _consumer_message(11), _consumer_message(12)
    assert not skipped.tracked  # a stream tracks a record when it takes it
    taken.tracked = True
    assert consumer.ack(skipped) is not patched
    assert consumer.ack(taken) is True
    assert consumer._acked[tp] == ([12] if patched else [11, 12])  # noqa: SLF001
    # What a commit would pass: not the skipped record once its acknowledgement is left out.
    assert consumer._new_offset(tp) == (None if patched else 13)  # noqa: SLF001


def test_the_worker_app_acknowledges_only_what_a_stream_took(tmp_path):
    from agents.app import create_app
    from agents.settings import WorkerSettings

    app = create_app(WorkerSettings(data_dir=str(tmp_path)))
    assert "TakenOnlyConsumer" in {c.__name__ for c in type(app.consumer).__mro__}


def test_the_start_of_a_partition_is_its_committed_offset_or_its_first_one_in_this_assignment():
    import asyncio

    from faust.types import TP

    from agents.faust_private import seek_before_resuming_streams, start_offset

    app = faust.App("mynapoint-start-test", broker="kafka://127.0.0.1:1", store="memory://")
    seek_before_resuming_streams(app)
    table = app.Table("persons", partitions=4)
    consumer = app.consumer
    committed, zero, fresh = (TP("mynapoint.cards", p) for p in range(3))
    changelog = TP(table.changelog_topic.get_topic_name(), 2)
    consumer.assignment = lambda: {committed, zero, fresh, changelog}
    asked: list[tuple[TP, ...]] = []

    async def seek_to_committed() -> dict[TP, int | None]:
        return {committed: 41, zero: 0, fresh: None, changelog: None}

    async def earliest_offsets(*partitions: TP) -> dict[TP, int]:
        asked.append(tuple(sorted(partitions)))
        return {tp: 3 for tp in partitions}  # retention removed offsets 0 to 2

    consumer.seek_to_committed = seek_to_committed
    consumer.earliest_offsets = earliest_offsets
    assert start_offset(app, fresh) is None  # before the seek: not known
    asyncio.run(consumer.perform_seek())
    # Faust keeps a committed 0 as None: the consumer starts such a partition at its first offset
    # too. Changelogs are not the steps' sources: not asked.
    assert asked == [(zero, fresh)]
    assert [start_offset(app, tp) for tp in (committed, zero, fresh)] == [41, 3, 3]
    app.consumer_generation_id += 1  # a rebalance: learnt for the assignment that ended
    assert start_offset(app, fresh) is None
    consumer._committed_offset[fresh] = 7  # once committed, where the group resumes it
    assert start_offset(app, fresh) == 7


def test_aiokafka_hands_a_fenced_member_s_error_to_the_user_under_a_name_we_give_it():
    # Pinned: aiokafka has no class for Kafka's error 82, reads unknown codes from
    # `kafka_errors`, raises a join error it does not handle as `KafkaError(repr(err))`, and keeps
    # what its coordination loop could not handle in `_pending_exception`.
    import inspect

    from aiokafka import errors
    from aiokafka.consumer.group_coordinator import CoordinatorGroupRebalance, GroupCoordinator

    from agents.faust_private import FENCED_INSTANCE_ID, name_fenced_instance_ids

    assert "kafka_errors.get(error_code, UnknownError)" in inspect.getsource(errors.for_code)
    assert "raise Errors.KafkaError(repr(err))" in inspect.getsource(CoordinatorGroupRebalance)
    assert "self._pending_exception = exc" in inspect.getsource(
        GroupCoordinator._push_error_to_user)
    named = name_fenced_instance_ids()
    assert errors.for_code(FENCED_INSTANCE_ID) is named
    assert name_fenced_instance_ids() is named  # once
    assert str(named()) == "[Error 82] FencedInstanceIdError"


@pytest.mark.parametrize(("held", "is_fenced"), [
    ("join", True),        # a JoinGroup or SyncGroup answered with 82
    ("heartbeat", True),   # a Heartbeat answered with 82
    ("other", False),      # any other error
    (None, False),         # nothing held
])
def test_a_worker_knows_when_the_broker_fenced_it(app_holding, held, is_fenced):
    from aiokafka.errors import KafkaError, UnknownError

    from agents.faust_private import fenced, name_fenced_instance_ids

    error = name_fenced_instance_ids()()
    made = {"join": KafkaError(repr(error)),
            "heartbeat": KafkaError(f"Unexpected exception in heartbeat task: {error!r}"),
            "other": KafkaError(repr(UnknownError())), None: None}[held]
    assert fenced(app_holding(made)[0]) is (made if is_fenced else None)


def test_a_worker_whose_consumer_is_not_made_yet_is_not_fenced(app):
    from agents.faust_private import fenced

    assert fenced(app) is None
