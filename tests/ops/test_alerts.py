"""ops/: the Prometheus configuration and alerting rules fit the metrics the workers export."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

from agents.metrics import COLLECTED_LABELS  # importing it registers the worker's metrics

ROOT = Path(__file__).resolve().parents[2]
ALERTS = yaml.safe_load((ROOT / "ops" / "alerts.yml").read_text(encoding="utf-8"))
RULES = [rule for group in ALERTS["groups"] for rule in group["rules"]]
SCRAPE_LABELS = {"instance", "job"}


def exported() -> dict[str, set[str]]:
    """Series name -> label names, for every metric the worker exports (streams/pipeline/metrics.py, agents/metrics.py)."""
    out: dict[str, set[str]] = {}
    for family in REGISTRY.collect():
        if not family.name.startswith("mynapoint_"):
            continue
        labels = {k for s in family.samples for k in s.labels} - {"le"}
        collector = REGISTRY._names_to_collectors.get(family.name)  # noqa: SLF001
        labels |= set(getattr(collector, "_labelnames", ()))
        if family.type == "counter":
            out[family.name + "_total"] = labels
        elif family.type == "histogram":
            for suffix in ("_bucket", "_count", "_sum"):
                out[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
        else:
            out[family.name] = labels
    for name, labels in COLLECTED_LABELS.items():
        out[name] = out.get(name, set()) | set(labels)
    return out


def test_every_rule_says_what_it_means_and_what_to_do():
    assert RULES
    for rule in RULES:
        assert set(rule) >= {"alert", "expr", "labels", "annotations"}, rule.get("alert")
        assert rule["labels"]["severity"] in {"page", "ticket", "info"}
        assert rule["annotations"]["summary"] and len(rule["annotations"]["action"]) > 40


def test_rules_use_only_exported_metrics_and_labels():
    metrics = exported()
    for rule in RULES:
        expr = rule["expr"]
        used = re.findall(r"\b(mynapoint_\w+)(?:\{([^}]*)\})?", expr)
        assert used or "up{" in expr, rule["alert"]
        available = set(SCRAPE_LABELS)
        for name, selector in used:
            assert name in metrics, f"{rule['alert']}: {name} is not exported"
            available |= metrics[name]
            for label in re.findall(r"(\w+)\s*=~?", selector):
                assert label in metrics[name], f"{rule['alert']}: {name} has no label {label}"
        for group in re.findall(r"\bby\s*\(([^)]*)\)", expr):
            for label in (x.strip() for x in group.split(",")):
                assert label in available, f"{rule['alert']}: no label {label} to group by"


def test_prometheus_loads_the_rules_and_compose_mounts_them():
    prom = yaml.safe_load((ROOT / "ops" / "prometheus.yml").read_text(encoding="utf-8"))
    assert prom["rule_files"] == ["/etc/prometheus/alerts.yml"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    volumes = compose["services"]["prometheus"]["volumes"]
    assert "./ops/alerts.yml:/etc/prometheus/alerts.yml:ro" in volumes
