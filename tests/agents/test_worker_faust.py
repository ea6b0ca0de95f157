"""What the worker relies on in Faust: no terminal spinner turning the root logger to DEBUG
(agents/worker.py), and the consumer internals that intake and the lag gauge read.

The spinner: at WARNING, Faust's trap made every `logger.debug` on the hot path build a record."""

from __future__ import annotations

import logging

import faust
import pytest

from agents.worker import make_worker


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
    make_worker(app, logging.getLevelName(level).lower()).on_setup_root_logger(logger, level)
    assert logger.level == logging.WARNING
    assert len(logger.handlers) == 1


def test_faust_consumer_still_keeps_committed_offsets_where_intake_reads_them(app):
    # Intake's lag-aware idleness and the lag gauge read the consumer's private
    # `_committed_offset` (agents/app.py has_more, agents/metrics.py): a Faust upgrade that
    # renames it must fail here, not silently make every source look idle or lag unknown.
    consumer = app.consumer
    assert isinstance(consumer._committed_offset, dict)
    assert callable(consumer.highwater)
