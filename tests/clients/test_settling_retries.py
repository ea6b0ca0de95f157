"""`mynapoint produce` right after topics were made or grown: the producer's retries while the new
partitions' leaders settle are counted and reported in one line, not logged one by one (dozens on
32 partitions); any other send error is logged as before."""

from __future__ import annotations

import logging

from aiokafka.errors import KafkaTimeoutError, NotLeaderForPartitionError

from clients.connect import counted_settling_retries
from clients.produce import ProduceReport, retries_summary

SENDER = logging.getLogger("aiokafka.producer.sender")


def _retry(error: type) -> None:
    # aiokafka's own call (aiokafka/producer/sender.py), with the error class as its argument.
    SENDER.warning("Got error produce response on topic-partition %s, retrying. Error: %s",
                   "TopicPartition(topic='mynapoint.cards', partition=3)", error)


def test_settling_retries_are_counted_instead_of_logged(caplog):
    caplog.set_level(logging.WARNING, logger="aiokafka.producer.sender")
    with counted_settling_retries() as counts:
        for _ in range(3):
            _retry(NotLeaderForPartitionError)
        _retry(KafkaTimeoutError)  # not a settling error: logged
    assert counts == {"NotLeaderForPartitionError": 3}
    assert [r.args[-1] for r in caplog.records] == [KafkaTimeoutError]


def test_outside_the_block_every_retry_is_logged(caplog):
    caplog.set_level(logging.WARNING, logger="aiokafka.producer.sender")
    with counted_settling_retries():
        pass
    _retry(NotLeaderForPartitionError)
    assert len(caplog.records) == 1


def test_the_report_line():
    report = ProduceReport()
    assert retries_summary(report) == ""
    report.retried.update({"NotLeaderForPartitionError": 31, "LeaderNotAvailableError": 2})
    assert retries_summary(report) == (
        "33 sends were retried while new partitions' leaders settled (2 after "
        "LeaderNotAvailableError, 31 after NotLeaderForPartitionError); every event counted "
        "above was acknowledged")
