"""Prometheus metrics a Quix Streams worker computes at scrape time.

The counters every engine keeps on the hot path are in streams/pipeline/metrics.py (imported
here). Consumer lag and partition ownership are read when scraped from the app's consumer
(librdkafka's handle is safe to use from the scrape thread; the high watermarks are its cached
ones, the committed offsets one request to the group coordinator). State sizes
(`mynapoint_table_keys`) are RocksDB's own estimate for the state partitions the worker holds,
by the state's table: `journal` (the ledger's state: each person's record and timeline chunks,
which this engine keeps in one store) and `claims`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily

import streams.pipeline.metrics  # noqa: F401 - registers the counters every engine keeps
from schemas import topics

#: The topics whose partitions a worker owns: the inputs, the journal, the claims (not Quix's
#: changelogs, which it assigns to itself paused, to recover from).
DATA_TOPICS = frozenset((*topics.INPUT_TOPICS, topics.JOURNAL, topics.CLAIMS))


#: The `mynapoint_table_keys` label of each stateful dataframe's state, by its source topic.
TABLE_OF_STATE = {topics.JOURNAL: "journal", topics.CLAIMS: "claims"}


class _Collector:
    def __init__(self) -> None:
        self.consumer: Any = None
        self.databases: Callable[[], dict[str, list[Any]]] | None = None

    def collect(self):
        sizes = GaugeMetricFamily(
            "mynapoint_table_keys",
            "Keys in each table's active partitions on this worker (RocksDB's estimate)",
            labels=["table"],
        )
        if self.databases is not None:
            try:
                for source, dbs in sorted(self.databases().items()):
                    keys = sum(db.property_int_value("rocksdb.estimate-num-keys") or 0
                               for db in dbs)
                    sizes.add_metric([TABLE_OF_STATE.get(source, source)], float(keys))
            except Exception:  # noqa: BLE001 - a store closed by a rebalance mid-scrape
                pass
        yield sizes
        lag = GaugeMetricFamily(
            "mynapoint_consumer_lag", "Records behind the high watermark, by topic and partition",
            labels=["topic", "partition"],
        )
        owned = GaugeMetricFamily(
            "mynapoint_partition_owned",
            "1 for each partition this worker owns (actively processes), by topic and partition",
            labels=["topic", "partition"],
        )
        consumer = self.consumer
        if consumer is not None:
            try:
                mine = [tp for tp in consumer.assignment() if tp.topic in DATA_TOPICS]
                for tp in sorted(mine, key=lambda tp: (tp.topic, tp.partition)):
                    owned.add_metric([tp.topic, str(tp.partition)], 1.0)
                for tp in consumer.committed(mine, timeout=5) if mine else ():
                    _, high = consumer.get_watermark_offsets(tp, cached=True)
                    if high >= 0 and tp.offset >= 0:
                        lag.add_metric([tp.topic, str(tp.partition)],
                                       float(max(0, high - tp.offset)))
            except Exception:  # noqa: BLE001 - a scrape during a rebalance must not fail
                pass
        yield lag
        yield owned


_COLLECTOR = _Collector()
REGISTRY.register(_COLLECTOR)


def register_consumer(consumer: Any) -> None:
    _COLLECTOR.consumer = consumer


def register_state(databases: Callable[[], dict[str, list[Any]]]) -> None:
    """`databases()`: the RocksDB databases of the worker's state partitions, by source topic."""
    _COLLECTOR.databases = databases
