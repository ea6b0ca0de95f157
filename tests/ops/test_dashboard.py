"""ops/grafana: the dashboard follows Grafana's dashboard JSON model and is provisioned with the
Prometheus datasource its panels name (Grafana itself does not run here: the integration test
tests/integration/test_prometheus.py runs every query against a real Prometheus).

The model is the documented one (grafana.com/docs/grafana/latest/dashboards/build-dashboards/
view-dashboard-json-model/): top-level uid, title, panels, time, templating, annotations,
schemaVersion...; each panel a type, an id unique in the dashboard, a title, a gridPos on the
24-column grid and, for data panels, a datasource and targets.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from tests.ops.test_alerts import SCRAPE_LABELS, exported
from tests.promtools import dashboard_targets

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "ops" / "grafana"
DASHBOARD = json.loads((GRAFANA / "dashboards" / "mynapoint.json").read_text(encoding="utf-8"))
DATASOURCES = yaml.safe_load(
    (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text(encoding="utf-8"))
PROVIDERS = yaml.safe_load(
    (GRAFANA / "provisioning" / "dashboards" / "mynapoint.yml").read_text(encoding="utf-8"))
RUNBOOK = (ROOT / "docs" / "RUNBOOK.md").read_text(encoding="utf-8")

TOP_LEVEL = {"uid": str, "title": str, "tags": list, "timezone": str, "editable": bool,
             "graphTooltip": int, "panels": list, "time": dict, "timepicker": dict,
             "templating": dict, "annotations": dict, "refresh": str, "schemaVersion": int,
             "version": int, "links": list}
# Grafana's built-in panel plugins (the ones this dashboard may use).
PANEL_TYPES = {"row", "timeseries", "stat", "table", "gauge", "bargauge", "heatmap", "text",
               "piechart", "state-timeline", "status-history", "barchart", "histogram"}


def panels() -> list[dict]:
    out = []
    for p in DASHBOARD["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def data_panels() -> list[dict]:
    return [p for p in panels() if p["type"] not in {"row", "text"}]


def test_top_level_keys_follow_the_json_model():
    for key, kind in TOP_LEVEL.items():
        assert isinstance(DASHBOARD.get(key), kind), key
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", DASHBOARD["uid"])
    assert set(DASHBOARD["time"]) == {"from", "to"}
    assert isinstance(DASHBOARD["templating"]["list"], list)
    assert isinstance(DASHBOARD["annotations"]["list"], list)
    assert DASHBOARD["graphTooltip"] in {0, 1, 2}
    assert DASHBOARD.get("id") is None  # provisioned dashboards get their id from Grafana


def test_panels_have_type_unique_id_title_and_a_place_on_the_grid():
    ids = [p["id"] for p in panels()]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)
    cells: set[tuple[int, int]] = set()
    for p in panels():
        assert p["type"] in PANEL_TYPES, p["type"]
        assert p["title"].strip()
        g = p["gridPos"]
        assert set(g) == {"h", "w", "x", "y"} and all(isinstance(v, int) for v in g.values())
        assert g["h"] >= 1 and 1 <= g["w"] <= 24 and g["x"] >= 0 and g["y"] >= 0
        assert g["x"] + g["w"] <= 24, p["title"]
        cell = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & cell, f"{p['title']} overlaps another panel"
        cells |= cell


def test_every_query_names_the_provisioned_prometheus():
    [ds] = DATASOURCES["datasources"]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    expected = {"type": "prometheus", "uid": ds["uid"]}
    assert data_panels()
    for p in data_panels():
        assert p["datasource"] == expected, p["title"]
        assert p["targets"], p["title"]
        ref_ids = [t["refId"] for t in p["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), p["title"]
        for t in p["targets"]:
            assert t["datasource"] == expected and t["expr"].strip(), p["title"]


def test_every_panel_says_what_healthy_is_and_which_runbook_step_applies():
    anchors = set(re.findall(r"^## (\S+)$", RUNBOOK, re.M))
    for p in data_panels():
        desc = p.get("description", "")
        assert "Healthy:" in desc, p["title"]
        steps = re.findall(r"Runbook: docs/RUNBOOK\.md#([\w-]+)", desc)
        assert steps and set(steps) <= anchors, p["title"]


def test_queries_use_only_exported_metrics_and_labels():
    metrics = exported()
    metrics["up"] = set()
    for title, expr in dashboard_targets(DASHBOARD):
        used = re.findall(r"\b(mynapoint_\w+|up)(?:\{([^}]*)\})?", expr)
        assert used, title
        available = set(SCRAPE_LABELS)
        for name, selector in used:
            assert name in metrics, f"{title}: {name} is not exported"
            available |= metrics[name]
            for label in re.findall(r"(\w+)\s*=~?", selector):
                assert label in metrics[name] | SCRAPE_LABELS, f"{title}: {name} has no {label}"
        for group in re.findall(r"\bby\s*\(([^)]*)\)", expr):
            for label in (x.strip() for x in group.split(",")):
                assert label in available, f"{title}: no label {label} to group by"


def test_the_dashboard_shows_what_an_sre_needs():
    exprs = " ".join(e for _, e in dashboard_targets(DASHBOARD))
    for metric in ("records_in_total", "decisions_total", "points_granted_total",
                   "points_clawed_back_total", "dead_letters_total", "consumer_lag",
                   "aligner_held", "late_events_total", "processing_seconds_bucket",
                   "journal_to_decision_seconds_bucket", "claims_total", "alerts_total",
                   "table_keys", "partition_owned", "claim_waits", "claim_wait_oldest_seconds",
                   "partition_assignments_total"):
        assert f"mynapoint_{metric}" in exprs, metric
    assert "histogram_quantile(0.5," in exprs and "histogram_quantile(0.99," in exprs


def test_compose_provisions_grafana_with_the_dashboard():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    grafana = compose["services"]["grafana"]
    [provider] = PROVIDERS["providers"]
    assert provider["type"] == "file"
    assert "./ops/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    assert f"./ops/grafana/dashboards:{provider['options']['path']}:ro" in grafana["volumes"]
    assert "prometheus" in grafana["depends_on"]


def test_every_alert_names_an_existing_runbook_step():
    anchors = set(re.findall(r"^## (\S+)$", RUNBOOK, re.M))
    rules = yaml.safe_load((ROOT / "ops" / "alerts.yml").read_text(encoding="utf-8"))
    for rule in (r for g in rules["groups"] for r in g["rules"]):
        runbook = rule["annotations"]["runbook"]
        assert runbook.startswith("docs/RUNBOOK.md#"), rule["alert"]
        assert runbook.split("#", 1)[1] in anchors, rule["alert"]
