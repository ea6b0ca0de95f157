"""Prometheus in the loop: a real Prometheus (Debian's package, installed by `./run setup`) scrapes
a live worker with ops/prometheus.yml and ops/alerts.yml.

A demo feed goes through the worker; then every query of the Grafana dashboard
(ops/grafana/dashboards) must return data through Prometheus's HTTP API, and every alerting rule
must load and evaluate without error, with the dead-letter and late-event alerts quiet. Then a
broken feed (records that are not JSON, and a topic that went silent and comes back with old
events) must make those two alerts fire (pending, then firing after their `for:`).

Prometheus runs on a free loopback port (never 9090, where a packaged service may listen) with its
own data directory and a copy of ops/prometheus.yml whose only changes are the worker as target,
a 1 s scrape and evaluation interval and the rule file's path in this tree
(devtools/prometheus.py, which `mynapoint dev` uses too).
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import yaml

from clients.connect import free_port, run_blocking
from clients.produce import produce_lines
from devtools.demo import generate
from devtools.prometheus import PACKAGED_PORT, LocalPrometheus
from schemas import topics
from schemas.codec import decode_event
from tests.integration.test_alignment import _in_time_order
from tests.integration.workers import WorkerProcess, partition_of, produce_raw, wait_for
from tests.promtools import dashboard_targets, require

ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = str(ROOT / "streams" / "data" / "demo.toml")
ALERT_RULES = ROOT / "ops" / "alerts.yml"
DASHBOARD = json.loads(
    (ROOT / "ops" / "grafana" / "dashboards" / "mynapoint.json").read_text(encoding="utf-8"))
PARTITIONS = 4
BAD_IN_HEALTHY_FEED = 2
BAD_IN_BROKEN_FEED = 400


class Prometheus(LocalPrometheus):
    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", (expr, data["resultType"])
        return data["result"]

    def value(self, expr: str) -> float:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else 0.0

    def alerts(self) -> dict[str, list[dict[str, Any]]]:
        """Active (pending or firing) alerts by name."""
        out: dict[str, list[dict[str, Any]]] = {}
        for alert in self.api("alerts")["alerts"]:
            out.setdefault(alert["labels"]["alertname"], []).append(alert)
        return out


def _has_finite_data(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(s["value"][1])) for s in result)


def _old_reservations(before: datetime) -> list[bytes]:
    """Reservations dated before anything in the demo feed, one person per partition and more:
    the backlog of a producer that went silent and came back."""
    when = (before - timedelta(days=30)).isoformat()
    people = [f"SILENT{i:04d}" for i in range(16)]
    assert {partition_of(p, PARTITIONS) for p in people} == set(range(PARTITIONS))
    return [msgspec.json.encode({"event_id": f"{p}-m", "type": "mykey.reserved", "person_id": p,
                                 "occurred_at": when, "mykey_id": f"SLNT{i:04d}"})
            for i, p in enumerate(people)]


def test_prometheus_scrapes_a_worker_the_dashboard_has_data_and_the_alerts_fire(
    fresh_broker, tmp_path, worker_engine
):
    require("prometheus")
    bootstrap = fresh_broker.bootstrap
    lines = _in_time_order(list(generate(people=200, seed=41, bad_ratio=0)))
    first_event = min(decode_event(line).occurred_at for line in lines)
    logs = tmp_path / "logs"
    logs.mkdir()
    metrics_port = free_port()
    worker = WorkerProcess(fresh_broker, tmp_path / "data", logs, config=DEMO_CONFIG,
                           partitions=PARTITIONS,
                           extra_args=["--metrics-port", str(metrics_port),
                                       "--idle-wait", "4"],
                           engine=worker_engine).start()
    prom = Prometheus(tmp_path / "prometheus", [f"127.0.0.1:{metrics_port}"])
    assert prom.port != PACKAGED_PORT
    try:
        prom.start()
        # Every counter the alerts take a rate of is scraped at 0 before any record arrives.
        wait_for(lambda: prom.value('sum(up{job="mynapoint"})') == 1
                 and len(prom.query("mynapoint_late_events_total")) == len(topics.INPUT_TOPICS),
                 120, "Prometheus to scrape the worker", worker=worker)

        # The healthy feed: the demo history in time order, and a trickle of bad records.
        report = run_blocking(produce_lines(lines, bootstrap, partitions=PARTITIONS, timeout=120))
        assert sum(report.sent.values()) == len(lines)
        produce_raw(bootstrap, topics.PAYMENTS, [b"{not json"] * BAD_IN_HEALTHY_FEED)
        wait_for(lambda: prom.value("sum(mynapoint_decisions_total)") >= len(lines)
                 and prom.value("sum(mynapoint_dead_letters_total)") >= BAD_IN_HEALTHY_FEED,
                 300, "Prometheus to see every record decided or dead-lettered", worker=worker)

        # Every query of the dashboard returns data through Prometheus's API.
        targets = dashboard_targets(DASHBOARD)
        assert len(targets) >= 15
        for title, expr in targets:
            wait_for(lambda e=expr: _has_finite_data(prom.query(e)), 30,
                     f"data for the panel {title!r}: {expr}", worker=worker)
        owned = prom.query('mynapoint_partition_owned{topic="mynapoint.journal"}')
        assert sorted(int(s["metric"]["partition"]) for s in owned) == list(range(PARTITIONS))
        assert prom.value("sum(mynapoint_late_events_total)") == 0

        # Every rule of ops/alerts.yml is loaded and evaluates without error.
        names = {r["alert"] for g in yaml.safe_load(ALERT_RULES.read_text())["groups"]
                 for r in g["rules"]}

        def evaluated() -> bool:
            loaded = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
            assert {r["name"] for r in loaded} == names
            for r in loaded:
                assert r["type"] == "alerting" and r["health"] in {"ok", "unknown"}, r
                assert not r.get("lastError"), r
            return all(r["health"] == "ok" for r in loaded)

        wait_for(evaluated, 30, "every alerting rule to be evaluated", worker=worker)
        healthy = prom.alerts()
        assert "MynapointDeadLettersHigh" not in healthy and "MynapointLateEvents" not in healthy
        assert "MynapointWorkerDown" not in healthy

        # The broken feed: records that are not JSON, and a silent topic's old backlog.
        produce_raw(bootstrap, topics.PAYMENTS, [b"{not json"] * BAD_IN_BROKEN_FEED)
        late = _old_reservations(first_event)
        report = run_blocking(produce_lines(late, bootstrap, partitions=PARTITIONS, timeout=60))
        assert sum(report.sent.values()) == len(late)

        def both_alert() -> bool:
            active = prom.alerts()
            return "MynapointDeadLettersHigh" in active and "MynapointLateEvents" in active

        wait_for(both_alert, 120, "the dead-letter and late-event alerts to fire", worker=worker)
        active = prom.alerts()
        for name in ("MynapointDeadLettersHigh", "MynapointLateEvents"):
            assert {a["state"] for a in active[name]} <= {"pending", "firing"}
        assert [a["labels"]["topic"] for a in active["MynapointLateEvents"]] == [
            topics.RESERVATIONS]
        assert prom.value(f'mynapoint_late_events_total{{topic="{topics.RESERVATIONS}"}}') >= 1
    except BaseException:
        print(prom.log_tail())
        print(worker.log_tail())
        raise
    finally:
        prom.stop()
        worker.stop()


