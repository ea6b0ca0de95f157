"""The local brokers' launchers without a broker: what a missing JDK or Maven says, the pinned
version, the Kafka configuration written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from devtools.brokers import BrokerError, BrokerNotInstalled, make_broker
from devtools.brokers import kafka as K

ROOT = Path(__file__).resolve().parents[2]


def test_the_kafka_version_is_pinned_in_the_maven_descriptor():
    assert K.kafka_version() == "4.1.1"


def test_no_java_is_one_line_saying_what_to_install(monkeypatch):
    monkeypatch.setattr(K.shutil, "which", lambda name: None)
    with pytest.raises(BrokerNotInstalled, match="Java.*apt-get install openjdk-17-jre-headless"):
        K.find_java()


def test_no_maven_is_one_line_saying_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv(K.ENV_HOME, str(tmp_path))  # nothing resolved there yet
    monkeypatch.setattr(K.shutil, "which", lambda name: None)
    with pytest.raises(BrokerNotInstalled, match="no `mvn`.*apt-get install maven"):
        K.resolve_jars()


def test_the_command_says_it_in_one_line_and_exits_2(tmp_path):
    # No java and no mvn on PATH: the message, not a traceback.
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "broker", "--engine", "kafka", "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": str(tmp_path), "MYNAPOINT_KAFKA_HOME": str(tmp_path / "kafka")},
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mynapoint broker: "), done.stderr
    assert "Traceback" not in done.stderr and "install" in lines[0]


def test_an_unknown_engine_is_refused():
    with pytest.raises(BrokerError, match="unknown broker engine 'redpanda'"):
        make_broker("redpanda")


def test_kafka_properties_name_both_listeners_and_keep_topics_explicit(monkeypatch, tmp_path):
    monkeypatch.setattr(K, "find_java", lambda: "java")
    monkeypatch.setattr(K, "resolve_jars", lambda: tmp_path / "libs")
    calls = []
    monkeypatch.setattr(K.subprocess, "run", lambda cmd, **kw: calls.append(cmd) or
                        subprocess.CompletedProcess(cmd, 0, "", ""))
    broker = make_broker("kafka", data_dir=tmp_path / "data", extra_config={"segment.ms": "100"})
    cmd = broker.prepare(19092)
    props = dict(line.split("=", 1) for line in
                 (tmp_path / "data" / "server.properties").read_text().splitlines())
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["listeners"].startswith("PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:")
    assert props["auto.create.topics.enable"] == "false" and props["segment.ms"] == "100"
    assert cmd[-2:] == ["kafka.Kafka", str(tmp_path / "data" / "server.properties")]
    fmt = calls[0]
    assert "kafka.tools.StorageTool" in fmt and any(a.startswith("--cluster-id=") for a in fmt)
