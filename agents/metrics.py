"""Prometheus metrics a Faust worker computes at scrape time, and the endpoint serving them.

The counters every engine keeps on the hot path are in streams/pipeline/metrics.py (imported
here, so that importing this module registers all of the worker's metrics). Consumer lag, table
sizes and partition ownership are read when scraped, from the worker's own Faust app, so they
cost nothing on the hot path.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY, start_http_server
from prometheus_client.core import GaugeMetricFamily

import streams.pipeline.metrics  # noqa: F401 - registers the counters every engine keeps
from agents.faust_private import (
    active_rocksdb,
    committed_offset,
    created_assignor,
    created_consumer,
)

#: Label names of the gauges computed at scrape time (they have no samples before a worker runs).
COLLECTED_LABELS = {
    "mynapoint_table_keys": ("table",),
    "mynapoint_consumer_lag": ("topic", "partition"),
    "mynapoint_partition_owned": ("topic", "partition"),
}


def table_keys(table: Any) -> int:
    """How many keys a table holds, without reading them.

    `len(table)` on a RocksDB table walks every key in Python, in the scrape thread and holding
    the GIL: seconds per scrape with millions of people, stalling the agents meanwhile. RocksDB
    keeps an estimate, `rocksdb.estimate-num-keys`, so each active partition's database is asked
    for it instead. It counts a key written again since the last flush or compaction more than
    once: an upper bound, documented as such in the README. This uses the store's
    `agents.faust_private.active_rocksdb`; other stores, and a Faust without it, fall back to
    `len`.
    """
    dbs = active_rocksdb(table)
    if dbs is None:
        return len(table)
    return sum(db.property_int_value("rocksdb.estimate-num-keys") or 0 for db in dbs)


class _Collector:
    """Table sizes, consumer lag and partition ownership, computed at scrape time."""

    def __init__(self) -> None:
        self.tables: dict[str, Any] = {}
        self.app: Any = None

    def collect(self):
        sizes = GaugeMetricFamily(
            "mynapoint_table_keys",
            "Keys in each table's active partitions on this worker (RocksDB's estimate)",
            labels=list(COLLECTED_LABELS["mynapoint_table_keys"]),
        )
        for name, table in self.tables.items():
            try:
                sizes.add_metric([name], float(table_keys(table)))
            except Exception:  # noqa: BLE001 - a table mid-recovery must not break the scrape
                continue
        yield sizes
        lag = GaugeMetricFamily(
            "mynapoint_consumer_lag", "Records behind the high watermark, by topic and partition",
            labels=list(COLLECTED_LABELS["mynapoint_consumer_lag"]),
        )
        app = self.app
        # Only what Faust has made: a scrape while the worker starts must not make the consumer
        # or the assignor from this thread (`faust_private.created_consumer`).
        consumer = created_consumer(app) if app is not None else None
        if consumer is not None:
            try:
                for tp in consumer.assignment():
                    hw = consumer.highwater(tp)
                    pos = committed_offset(app, tp)
                    if hw is not None and pos is not None:
                        lag.add_metric([tp.topic, str(tp.partition)], float(max(0, hw - pos)))
            except Exception:  # noqa: BLE001 - before the consumer starts there is no lag yet
                pass
        yield lag
        owned = GaugeMetricFamily(
            "mynapoint_partition_owned",
            "1 for each partition this worker owns (actively processes), by topic and partition",
            labels=list(COLLECTED_LABELS["mynapoint_partition_owned"]),
        )
        assignor = created_assignor(app) if app is not None else None
        if assignor is not None:
            try:
                for tp in sorted(assignor.assigned_actives()):
                    owned.add_metric([tp.topic, str(tp.partition)], 1.0)
            except Exception:  # noqa: BLE001 - before the first assignment nothing is owned
                pass
        yield owned


_COLLECTOR = _Collector()
REGISTRY.register(_COLLECTOR)


def register_tables(tables: dict[str, Any]) -> None:
    _COLLECTOR.tables.update(tables)


def register_app(app: Any) -> None:
    _COLLECTOR.app = app


def serve(port: int, host: str = "127.0.0.1") -> None:
    start_http_server(port, addr=host)
