"""Faust's private internals the worker relies on, all reached through agents/faust_private.py:
no terminal spinner turning the root logger to DEBUG, the consumer's committed offsets (intake and
the lag gauge), the RocksDB databases of active partitions (table sizes), the web app's middleware
list (the status API's guard), the transaction manager of the exactly-once mode (flushed before
it commits). Each name is pinned here so a Faust upgrade fails a test first.

The spinner: at WARNING, Faust's trap made every `logger.debug` on the hot path build a record."""

from __future__ import annotations

import logging

import faust
import pytest

from agents.faust_private import active_rocksdb, add_middleware, committed_offset, quiet_worker


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
    # `_committed_offset` (agents/intake.py `FaustSource.committed`, agents/metrics.py): a Faust
    # upgrade that renames it must fail here, not silently make every source look idle or lag unknown.
    consumer = app.consumer
    assert isinstance(consumer._committed_offset, dict)
    assert callable(consumer.highwater)
    assert committed_offset(app, ("mynapoint.cards", 0)) is None


def test_rocksdb_tables_expose_their_active_databases(tmp_path):
    app = faust.App("mynapoint-store-test", broker="kafka://127.0.0.1:1", store="rocksdb://",
                    datadir=str(tmp_path))
    table = app.Table("t", partitions=1, key_type=bytes, value_type=bytes)
    store = table.data
    assert callable(store._dbs_for_actives) and store.use_rocksdict
    assert active_rocksdb(table) == []  # no partition assigned yet


def test_memory_tables_have_no_rocksdb(app):
    assert active_rocksdb(app.Table("t", partitions=1)) is None


def test_middleware_lands_on_faust_web_app(app):
    async def mw(request, handler):  # pragma: no cover - never called
        return await handler(request)

    add_middleware(app, mw)
    assert app.web.web_app.middlewares[-1] is mw


def test_faust_marks_a_rebalance_before_it_forgets_the_revoked_partitions(app):
    # Intake acknowledges nothing while `app.rebalancing` is set (streams/pipeline/intake.py
    # `Intake._acknowledge`, through agents/intake.py `FaustSource.rebalancing`): that only helps if Faust sets it before the consumer drops the revoked
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
