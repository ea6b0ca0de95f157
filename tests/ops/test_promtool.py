"""ops/alerts.yml as Prometheus itself checks and tests it: `promtool check rules` and the unit
tests of ops/tests/alerts_test.yml (each alert fires on the series that should fire it, and stays
quiet on healthy ones)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from devtools.prometheus import local_config
from tests.promtools import require

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "ops" / "alerts.yml"
UNIT_TESTS = ROOT / "ops" / "tests" / "alerts_test.yml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require("promtool"), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_promtool_checks_the_rules():
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    alerts = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    assert f"SUCCESS: {len(alerts)} rules found" in done.stdout


def test_promtool_unit_tests_pass():
    done = promtool("test", "rules", str(UNIT_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_a_firing_and_a_quiet_unit_test():
    doc = yaml.safe_load(UNIT_TESTS.read_text())
    assert [str((UNIT_TESTS.parent / f).resolve()) for f in doc["rule_files"]] == [str(RULES)]
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in doc["tests"]:
        for check in case["alert_rule_test"]:
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    assert fires == alerts, f"alerts without a firing test: {alerts - fires}"
    assert quiet == alerts, f"alerts without a quiet test: {alerts - quiet}"


def test_a_missing_binary_fails_naming_the_setup_that_installs_it(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(pytest.fail.Exception, match=r"run \./run setup"):
        require("promtool")


def test_the_local_prometheus_config_is_ops_prometheus_yml_with_only_the_local_changes():
    ops = yaml.safe_load((ROOT / "ops" / "prometheus.yml").read_text(encoding="utf-8"))
    local = local_config(["127.0.0.1:1234"], "1s")
    assert ops["rule_files"] == ["/etc/prometheus/alerts.yml"]
    assert local["rule_files"] == [str(RULES)]
    assert local["scrape_configs"][0]["static_configs"] == [{"targets": ["127.0.0.1:1234"]}]
    assert local["global"] == {**ops["global"], "scrape_interval": "1s",
                               "evaluation_interval": "1s"}
    assert local["scrape_configs"][0]["job_name"] == ops["scrape_configs"][0]["job_name"]
