"""The worker's Prometheus metrics that every engine counts the same way (prometheus-client).

Names follow Prometheus conventions (`mynapoint_` prefix, `_total` counters, seconds). What an
engine computes at scrape time from its own consumer and tables (lag, table sizes, partitions
owned) is the engine's: for Faust, agents/metrics.py.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

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
REREADS = Counter(
    "mynapoint_rereads",
    "Sources (input topics, the journal, the claims) read again because the consumer lost its place "
    "in them (a hole in the offsets, or a source the broker has more of that delivered nothing), "
    "by topic",
    ["topic"],
)
ASSIGNMENTS = Counter(
    "mynapoint_partition_assignments",
    "Partition assignments this worker received: one for each rebalance of its group it took "
    "part in, its first join included",
)
HELD = Gauge("mynapoint_aligner_held", "Input records held by event-time alignment")
PAUSES = Counter(
    "mynapoint_aligner_pauses",
    "Times an input partition's fetching was paused because it held its bound of records waiting "
    "for event-time alignment (--max-held-per-partition), by topic",
    ["topic"],
)
PAUSED = Gauge(
    "mynapoint_aligner_paused_partitions",
    "Input partitions whose fetching is paused: each holds its bound of records waiting for "
    "event-time alignment (--max-held-per-partition)",
)
CLAIM_WAITS = Gauge(
    "mynapoint_claim_waits",
    "Persons whose decision waits for a claim's answer (on the journal partitions this worker "
    "holds)",
)
CLAIM_WAIT_OLDEST = Gauge(
    "mynapoint_claim_wait_oldest_seconds",
    "How long the longest of those waits has lasted (0 when nobody waits)",
)
LATENCY = Histogram(
    "mynapoint_processing_seconds",
    "Time the ledger spends on one journal record (one entry, or a batch of up to 64)",
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
    REREADS.labels(_topic)
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


def count_assignment() -> None:
    """A rebalance gave this worker its partitions (called by the engine's assignment hook)."""
    ASSIGNMENTS.inc()


def watch_claim_waits(waits: Any) -> None:
    """Reports the ledger's `ClaimWaits` (streams/pipeline/ledger.py) at every scrape."""
    CLAIM_WAITS.set_function(waits.count)
    CLAIM_WAIT_OLDEST.set_function(lambda: waits.oldest(time.monotonic()))


def observe_latency(started: float, record_timestamp: float | None) -> None:
    LATENCY.observe(time.perf_counter() - started)
    if record_timestamp:
        END_TO_END.observe(max(0.0, time.time() - record_timestamp))
