"""A live worker's Prometheus metrics agree with what it read and published (agents/metrics.py).

SREs alert on these numbers, so each counter is checked against the records themselves: decisions
by type and reason, points by campaign, alerts, dead letters by reason, events in by topic and
type; the table sizes (RocksDB's estimate, read from Faust's store) cover every person; consumer
lag on the inputs drains to zero once everything is committed.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from clients.connect import free_port, run_blocking
from clients.produce import produce_lines
from devtools.demo import generate
from schemas import topics
from schemas.codec import BadInput, decode_event
from streams.core.versions import journal_entries
from tests.integration.conftest import consume_sync
from tests.integration.workers import WorkerProcess, produce_raw, wait_for

ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = str(ROOT / "streams" / "data" / "demo.toml")


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the worker's /metrics, by (name, sorted labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
    }


def by_label(samples, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """Non-zero values of metric `name`, summed over the labels not asked for."""
    out: dict[tuple[str, ...], float] = {}
    for (n, lbls), value in samples.items():
        if n == name and value:
            d = dict(lbls)
            key = tuple(d[k] for k in labels)
            out[key] = out.get(key, 0) + value
    return out


def progress(s, records: int, valid: int, bad: int) -> str:
    """Where a worker that has not decided everything stands, by its own metrics."""
    lines = [
        f"records in: {sum(by_label(s, 'mynapoint_records_in_total', 'topic').values()):g} of "
        f"{records}; decisions: {sum(by_label(s, 'mynapoint_decisions_total', 'type').values()):g}"
        f" of {valid}; dead letters: "
        f"{sum(by_label(s, 'mynapoint_dead_letters_total', 'reason').values()):g} of {bad}",
        f"held by alignment: {by_label(s, 'mynapoint_aligner_held')}; claims answered: "
        f"{by_label(s, 'mynapoint_claims_total', 'kind', 'answer')}; waiting for an answer: "
        f"{by_label(s, 'mynapoint_claim_waits')}, the longest for "
        f"{by_label(s, 'mynapoint_claim_wait_oldest_seconds')} s",
        f"records in by topic: {by_label(s, 'mynapoint_records_in_total', 'topic')}",
        f"consumer lag: {by_label(s, 'mynapoint_consumer_lag', 'topic', 'partition')}",
    ]
    return "\n".join(lines)


def test_metrics_match_the_records(fresh_broker, tmp_path, worker_engine):
    bootstrap = fresh_broker.bootstrap
    lines = list(generate(people=300, seed=31, bad_ratio=0.01))
    valid, bad = [], []
    for line in lines:
        try:
            valid.append(decode_event(line))
        except BadInput:
            bad.append(line)
    assert bad
    logs = tmp_path / "logs"
    logs.mkdir()
    port = free_port()
    worker = WorkerProcess(fresh_broker, tmp_path / "data", logs, config=DEMO_CONFIG,
                           engine=worker_engine, extra_args=["--metrics-port", str(port)]).start()
    try:
        report = run_blocking(produce_lines(lines, bootstrap, partitions=4, timeout=120))
        assert sum(report.sent.values()) == len(valid)
        produce_raw(bootstrap, topics.PAYMENTS, bad)

        def decided() -> bool:
            try:
                s = scrape(port)
            except OSError:
                return False
            return (sum(by_label(s, "mynapoint_decisions_total", "type").values()) >= len(valid)
                    and sum(by_label(s, "mynapoint_dead_letters_total", "reason").values())
                    >= len(bad))

        try:
            wait_for(decided, 300, "every record decided or dead-lettered", worker=worker)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{progress(scrape(port), len(lines), len(valid), len(bad))}"
                                 ) from None

        records = consume_sync(bootstrap, [topics.DECISIONS, topics.GRANTS, topics.ALERTS,
                                           topics.DEADLETTER], timeout=120)
        published: list[dict[str, Any]] = [msgspec.json.decode(r.value) for r in records]
        kinds = Counter(o["kind"] for o in published)
        assert kinds["decision"] == len(valid) and kinds["dead_letter"] == len(bad)

        def lag_drained() -> bool:
            lag = by_label(scrape(port), "mynapoint_consumer_lag", "topic", "partition")
            return not any(topic in topics.INPUT_TOPICS for topic, _ in lag)

        # Offsets are committed about every second; then nothing is behind on the inputs.
        wait_for(lag_drained, 120, "consumer lag on the inputs to reach 0", worker=worker)
        s = scrape(port)
        # Every claim was answered, and the ledger saw each answer: nobody waits any more.
        assert by_label(s, "mynapoint_claims_total", "kind")
        assert s[("mynapoint_claim_waits", ())] == 0
        assert s[("mynapoint_claim_wait_oldest_seconds", ())] == 0
        lag_series = {lbl for (n, lbl) in s if n == "mynapoint_consumer_lag"}
        assert {dict(lbl)["topic"] for lbl in lag_series} >= set(topics.INPUT_TOPICS)

        decisions = Counter((o["type"], o["reason"] or "accepted") for o in published
                            if o["kind"] == "decision")
        assert by_label(s, "mynapoint_decisions_total", "type", "reason") == decisions
        granted: Counter[tuple[str]] = Counter()
        clawed: Counter[tuple[str]] = Counter()
        for o in published:
            if o["kind"] == "grant":
                if o["points"] >= 0:
                    granted[(o["campaign"],)] += o["points"]
                else:
                    clawed[(o["campaign"],)] -= o["points"]
        assert granted and by_label(s, "mynapoint_points_granted_total", "campaign") == {
            k: v for k, v in granted.items() if v}
        assert by_label(s, "mynapoint_points_clawed_back_total", "campaign") == {
            k: v for k, v in clawed.items() if v}
        assert by_label(s, "mynapoint_alerts_total", "code") == Counter(
            (o["code"],) for o in published if o["kind"] == "alert")
        assert by_label(s, "mynapoint_dead_letters_total", "reason") == Counter(
            (o["reason"],) for o in published if o["kind"] == "dead_letter")

        events_in = Counter((topics.TOPIC_BY_TYPE[type(e).__struct_config__.tag],
                             type(e).__struct_config__.tag) for e in valid)
        assert by_label(s, "mynapoint_events_in_total", "topic", "type") == events_in
        records_in = Counter(topics.TOPIC_BY_TYPE[type(e).__struct_config__.tag] for e in valid)
        records_in[topics.PAYMENTS] += len(bad)
        assert by_label(s, "mynapoint_records_in_total", "topic") == {
            (t,): n for t, n in records_in.items()}

        # The worker joined its group: at least one assignment, whatever rebalances followed.
        assert s[("mynapoint_partition_assignments_total", ())] >= 1
        owned = by_label(s, "mynapoint_partition_owned", "topic", "partition")
        assert set(owned) >= {(t, str(p)) for t in (*topics.INPUT_TOPICS, topics.JOURNAL,
                                                    topics.CLAIMS) for p in range(4)}
        # One observation per journal record folded: a record holds one entry or a batch.
        journal = consume_sync(fresh_broker.bootstrap, [topics.JOURNAL], timeout=60)
        assert sum(len(journal_entries(r.key, r.value)) for r in journal) >= len(valid)
        assert s[("mynapoint_processing_seconds_count", ())] >= len(journal)
        people = {e.person_id for e in valid}
        tables = by_label(s, "mynapoint_table_keys", "table")
        # RocksDB's estimate counts a key rewritten since the last flush more than once.
        if worker_engine == "quix":
            # One store holds each person's record and timeline chunks (at least one each),
            # written at the checkpoint after the ledger's last entry.
            def stored() -> bool:
                sizes = by_label(scrape(port), "mynapoint_table_keys", "table")
                return (sizes.get(("journal",), 0) >= 2 * len(people)
                        and sizes.get(("claims",), 0) >= 1)

            wait_for(stored, 60, "the state's key counts to cover everyone", worker=worker)
            return
        assert tables[("persons",)] >= len(people)
        assert tables[("timeline",)] >= len(people)
        assert tables[("claims",)] >= 1
    finally:
        worker.stop()


def _answers(host: str, port: int, path: str) -> bool:
    """Whether anything answers HTTP at host:port (an error status is an answer)."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=10):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


@pytest.mark.engines("tansu")
def test_the_worker_listens_only_where_it_is_told(broker, tmp_path, worker_engine):
    # --web-host and --metrics-host: an SRE keeps the status API and /metrics off the public
    # interface. Each answers on its own loopback address, and not on 127.0.0.1.
    web_host, metrics_host = "127.0.0.2", "127.0.0.3"
    metrics_port = free_port()
    logs = tmp_path / "logs"
    logs.mkdir()
    worker = WorkerProcess(broker, tmp_path / "data", logs, engine=worker_engine,
                           app_id=f"mynapoint-hosts-{worker_engine}", extra_args=[
                               "--web-host", web_host, "--metrics-port", str(metrics_port),
                               "--metrics-host", metrics_host]).start()
    try:
        assert worker.web_port is not None
        status = f"/persons/P{0:07d}"
        wait_for(lambda: (_answers(web_host, worker.web_port, status)
                          and _answers(metrics_host, metrics_port, "/metrics")),
                 180, f"the status API on {web_host} and /metrics on {metrics_host}",
                 worker=worker)
        assert not _answers("127.0.0.1", worker.web_port, status)
        assert not _answers("127.0.0.1", metrics_port, "/metrics")
        assert not _answers(web_host, metrics_port, "/metrics")
    finally:
        worker.stop()
