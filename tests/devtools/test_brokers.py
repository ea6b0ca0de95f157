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


@pytest.mark.parametrize("tls", [False, True])
def test_a_kafka_broker_with_sasl_users_has_a_secured_listener_of_its_own(monkeypatch, tmp_path,
                                                                          tls):
    monkeypatch.setattr(K, "find_java", lambda: "java")
    monkeypatch.setattr(K, "resolve_jars", lambda: tmp_path / "libs")
    monkeypatch.setattr(K.subprocess, "run", lambda cmd, **kw:
                        subprocess.CompletedProcess(cmd, 0, "", ""))
    broker = make_broker("kafka", data_dir=tmp_path / "data", sasl_users={"alice": "pw"}, tls=tls)
    broker.prepare(19092)
    broker.port = 19092
    text = (tmp_path / "data" / "server.properties").read_text()
    props = dict(line.split("=", 1) for line in text.splitlines())
    sasl = broker.sasl_bootstrap  # type: ignore[attr-defined]
    assert props["advertised.listeners"] == f"PLAINTEXT://127.0.0.1:19092,SASL://{sasl}"
    protocol = "SASL_SSL" if tls else "SASL_PLAINTEXT"
    assert props["listener.security.protocol.map"].endswith(f",SASL:{protocol}")
    assert 'user_alice="pw"' in props["listener.name.sasl.plain.sasl.jaas.config"]
    if tls:
        # The PEM texts as one line each (a properties value), and the CA for the clients.
        assert props["listener.name.sasl.ssl.keystore.key"].startswith(
            "-----BEGIN PRIVATE KEY-----\\n")
        assert props["listener.name.sasl.ssl.keystore.certificate.chain"].count(
            "-----BEGIN CERTIFICATE-----") == 2
        ca = broker.ca_file  # type: ignore[attr-defined]
        assert ca is not None and ca.read_text().startswith("-----BEGIN CERTIFICATE-----")
    else:
        assert "listener.name.sasl.ssl.keystore.key" not in props


def test_tls_secures_the_sasl_listener_only():
    with pytest.raises(BrokerError, match="give sasl_users too"):
        make_broker("kafka", tls=True)

