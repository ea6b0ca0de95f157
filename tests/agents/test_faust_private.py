"""Faust's private internals the worker relies on, all reached through agents/faust_private.py:
no terminal spinner turning the root logger to DEBUG, the consumer's committed offsets (intake and
the lag gauge), the RocksDB databases of active partitions (table sizes), the web app's middleware
list (the status API's guard). Each name is pinned here so a Faust upgrade fails a test first.

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
    # `_committed_offset` (agents/intake.py has_more, agents/metrics.py): a Faust upgrade that
    # renames it must fail here, not silently make every source look idle or lag unknown.
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
    # Intake acknowledges nothing while `app.rebalancing` is set (agents/intake.py
    # `acknowledge`): that only helps if Faust sets it before the consumer drops the revoked
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
