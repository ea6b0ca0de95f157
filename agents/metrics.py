"""Prometheus metrics served by each worker (prometheus-client).

Names follow Prometheus conventions (`mynapoint_` prefix, `_total` counters, seconds). Consumer lag
and table sizes are read when scraped, from the worker's own Faust app, so they cost nothing on
the hot path.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

from agents.faust_private import active_rocksdb, committed_offset
from schemas import topics
from schemas.codec import DEAD_LETTER_REASONS
from schemas.outcomes import Alert, DeadLetter, Decision, Grant, Outcome
from streams.core.reasons import ALERT_ACCOUNT_SHARED

EVENTS_IN = Counter(
    "mynapoint_records_in", "Input records read by intake, by topic", ["topic", "stage"]
)
EVENTS_BY_TYPE = Counter(
    "mynapoint_events_in", "Valid input events by topic and type", ["topic", "type"]
)
DECISIONS = Counter(
    "mynapoint_decisions", "Decisions published, by event type and reason", ["type", "reason"]
)
POINTS = Counter(
    "mynapoint_points_granted", "Points granted (net of clawbacks is granted - clawed back)",
    ["campaign"],
)
POINTS_CLAWED_BACK = Counter(
    "mynapoint_points_clawed_back", "Points taken back by refunds", ["campaign"]
)
ALERTS = Counter("mynapoint_alerts", "Alerts raised, by code", ["code"])
DEAD_LETTERS = Counter("mynapoint_dead_letters", "Bad input records, by reason", ["reason"])
CLAIMS = Counter("mynapoint_claims", "Cross-person claims answered", ["kind", "answer"])
REPEATS = Counter(
    "mynapoint_redelivered_entries",
    "Journal entries seen again (redelivery); their outcomes were re-sent as exact repeats",
)
LATE = Counter("mynapoint_late_events", "Events released after later ones, by topic", ["topic"])
HELD = Gauge("mynapoint_aligner_held", "Input records held by event-time alignment")
LATENCY = Histogram(
    "mynapoint_processing_seconds", "Time the ledger spends on one journal entry",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0),
)
END_TO_END = Histogram(
    "mynapoint_journal_to_decision_seconds",
    "From the journal record's timestamp to its decision being sent",
    buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


# Series that alerts take a rate or an increase of exist from the start, at 0: a labelled counter
# otherwise appears only with its first increment, and `rate()`/`increase()` see no increase in a
# series' first sample (the first shared account, the first burst of a new dead-letter reason or
# of late events would never alert; the input the dead letters are a share of would be undercounted).
for _reason in DEAD_LETTER_REASONS:
    DEAD_LETTERS.labels(_reason)
for _topic in topics.INPUT_TOPICS:
    LATE.labels(_topic)
    EVENTS_IN.labels(_topic, "intake")  # the dead-letter alert's denominator
ALERTS.labels(ALERT_ACCOUNT_SHARED)


_CHILDREN: dict[tuple[Any, tuple[Any, ...]], Any] = {}


def labelled(metric: Any, *values: Any) -> Any:
    """`metric.labels(*values)`, looked up once per label set.

    `labels()` validates and converts the values and takes the metric's lock on every call, a
    few times per event on the hot path; the child it returns is the same object every time
    (prometheus_client keeps it until `remove`/`clear`, which this worker never calls), so it is
    kept here, keyed by the metric and the values, and incremented directly.
    """
    key = (metric, values)
    child = _CHILDREN.get(key)
    if child is None:
        child = _CHILDREN[key] = metric.labels(*values)
    return child


def count_outcome(o: Outcome) -> None:
    if type(o) is Decision:
        labelled(DECISIONS, o.type, o.reason or "accepted").inc()
    elif type(o) is Grant:
        if o.points >= 0:
            labelled(POINTS, o.campaign).inc(o.points)
        else:
            labelled(POINTS_CLAWED_BACK, o.campaign).inc(-o.points)
    elif type(o) is Alert:
        labelled(ALERTS, o.code).inc()
    elif type(o) is DeadLetter:
        labelled(DEAD_LETTERS, o.reason).inc()


def observe_latency(started: float, record_timestamp: float | None) -> None:
    LATENCY.observe(time.perf_counter() - started)
    if record_timestamp:
        END_TO_END.observe(max(0.0, time.time() - record_timestamp))


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
        if app is not None:
            try:
                consumer = app.consumer
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
        if app is not None:
            try:
                for tp in sorted(app.assignor.assigned_actives()):
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
