"""The local brokers, topic creation and `mynapoint produce`, against real brokers (Tansu and
Apache Kafka)."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from clients.admin import ALL_TOPICS, ensure_topics, topic_configs
from clients.connect import free_port, probe, run_blocking
from clients.produce import produce_file
from devtools.brokers import BrokerError, BrokerProcess
from schemas import topics
from schemas.topics import INPUT_TOPICS, TOPIC_BY_TYPE

MYNAPOINT = str(Path(sys.executable).with_name("mynapoint"))
CMD_TIMEOUT = 60


def _ev(event_id: str, type_: str, person: str, **fields: object) -> str:
    base = {
        "event_id": event_id,
        "type": type_,
        "person_id": person,
        "occurred_at": "2021-03-01T10:00:00+09:00",
    }
    return json.dumps({**base, **fields}, ensure_ascii=False, separators=(",", ":"))


VALID = [
    _ev(
        "e1",
        "card.issued",
        "alice",
        card_applied_on="2021-02-01",
        birth_date="1980-01-01",
        certificate_serial="c-1",
        certificate_expires_at="2026-03-01T00:00:00+09:00",
    ),
    _ev("e2", "mykey.reserved", "alice", mykey_id="ABCD1234"),
    _ev(
        "e3",
        "service.linked",
        "alice",
        campaign="phase1",
        service_id="demo-pay",
        service_account="acct-1",
    ),
    _ev(
        "e4",
        "payment.recorded",
        "alice",
        service_id="demo-pay",
        service_account="acct-1",
        transaction_id="tx-1",
        method="charge",
        amount_yen=1000,
    ),
    _ev(
        "e5",
        "card.issued",
        "bob",
        card_applied_on="2021-02-02",
        birth_date="1990-05-05",
        certificate_serial="c-2",
        certificate_expires_at="2026-03-02T00:00:00+09:00",
    ),
    _ev("e6", "account.registered", "bob"),
    _ev(
        "e7",
        "certificate.renewed",
        "bob",
        certificate_serial="c-3",
        certificate_expires_at="2031-03-02T00:00:00+09:00",
        reason="renewal",
    ),
    # Unknown extra fields are ignored, and the line goes as written (spacing and all).
    '{"event_id": "e8", "type": "payment.refunded", "person_id": "carol", '
    '"occurred_at": "2021-04-01T09:00:00Z", "service_id": "demo-pay", '
    '"service_account": "acct-9", "transaction_id": "tx-9", "amount_yen": 5, "note": "extra"}',
]
# line number (1-based, in the file written below) -> reason code
BAD = {
    3: "not_json",
    6: "unknown_type",
    8: "my_number_in_person_id",
    10: "missing_field",
    11: "empty",
}


def _write_events(path: Path) -> dict[int, str]:
    """Writes VALID and BAD lines interleaved; returns line number -> valid line."""
    bad_lines = {
        "not_json": "this is not json",
        "unknown_type": _ev("b1", "card.exploded", "dave"),
        "my_number_in_person_id": _ev("b2", "account.registered", "123456789012"),
        "missing_field": '{"event_id":"b3","type":"mykey.reserved","person_id":"erin",'
        '"occurred_at":"2021-03-01T10:00:00+09:00"}',
        "empty": "",
    }
    lines: list[str] = []
    valid_at: dict[int, str] = {}
    valid = iter(VALID)
    total = len(VALID) + len(BAD)
    for lineno in range(1, total + 1):
        if lineno in BAD:
            lines.append(bad_lines[BAD[lineno]])
        else:
            line = next(valid)
            lines.append(line)
            valid_at[lineno] = line
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return valid_at


def _expected_counts() -> Counter[str]:
    return Counter(TOPIC_BY_TYPE[json.loads(line)["type"]] for line in VALID)


def _assert_landed(consume, bootstrap: str) -> None:
    records = consume(bootstrap, list(INPUT_TOPICS), timeout=20)
    assert len(records) == len(VALID), [r.value for r in records]
    by_value = {r.value: r for r in records}
    for line in VALID:
        event = json.loads(line)
        record = by_value[line.encode("utf-8")]
        assert record.topic == TOPIC_BY_TYPE[event["type"]]
        assert record.key == event["person_id"].encode("utf-8")
    # One person's events are on one partition per topic, in file order.
    for topic in INPUT_TOPICS:
        per_person: dict[bytes, list[int]] = {}
        for r in records:
            if r.topic == topic:
                per_person.setdefault(r.key, []).append(r.offset)
        for offsets in per_person.values():
            assert offsets == sorted(offsets)


# -- the broker ---------------------------------------------------------------------------------


def test_local_broker_starts_answers_and_stops(make_test_broker) -> None:
    port = free_port()
    broker = make_test_broker(port=port)
    with broker:
        assert broker.bootstrap == f"127.0.0.1:{port}"
        assert broker.is_running()
        assert run_blocking(probe(broker.bootstrap, timeout=5))
        process = broker.process
    assert process is not None and process.poll() is not None
    assert not broker.is_running()
    assert not run_blocking(probe(f"127.0.0.1:{port}", timeout=1))


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_broker_command_runs_in_foreground_until_stopped(broker_engine, stop, tmp_path) -> None:
    # The data dir (kafka) names the broker's process, so we can tell none is left behind.
    extra = ["--data-dir", str(tmp_path / "kafka")] if broker_engine == "kafka" else []
    proc = subprocess.Popen(
        [MYNAPOINT, "broker", "--engine", broker_engine, "--quiet", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        line = _read_line(proc, timeout=CMD_TIMEOUT * 2)
        assert line.startswith("127.0.0.1:"), line
        assert run_blocking(probe(line, timeout=5))
        assert _processes_naming(line.split(":")[1] if not extra else str(tmp_path / "kafka"))
        proc.send_signal(stop)
        assert proc.wait(timeout=CMD_TIMEOUT) == 0
        assert not run_blocking(probe(line, timeout=1))
        if extra:
            assert _processes_naming(str(tmp_path / "kafka")) == []
            assert (tmp_path / "kafka" / "kafka-logs" / "meta.properties").is_file()  # kept
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=CMD_TIMEOUT)


def _processes_naming(text: str) -> list[int]:
    """Pids of live processes whose command line contains `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next((ln for ln in (entry / "status").read_text().splitlines()
                          if ln.startswith("State:")), "")
        except OSError:
            continue
        if text in cmdline and "zombie" not in state:
            found.append(int(entry.name))
    return found


def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    buf = b""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or proc.poll() is not None and not sel.select(0):
                err = proc.stderr.read() if proc.poll() is not None and proc.stderr else b""
                raise AssertionError(f"no bootstrap line from `mynapoint broker`: {buf!r} {err!r}")
            if sel.select(left):
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    continue
                buf += chunk
    return buf.split(b"\n", 1)[0].decode().strip()


# -- topics -------------------------------------------------------------------------------------


def test_ensure_topics_is_idempotent(broker: BrokerProcess, unique_topic) -> None:
    names = [unique_topic("a"), unique_topic("b")]
    first = ensure_topics(broker.bootstrap, 3, names, timeout=20)
    assert sorted(first.created) == sorted(names)
    assert first.partitions == {name: 3 for name in names}
    again = ensure_topics(broker.bootstrap, 5, names, timeout=20)
    assert again.created == []
    assert sorted(again.existing) == sorted(names)
    assert again.mismatched == {name: 3 for name in names}  # reported, left unchanged


def test_ensure_topics_makes_a_topic_with_its_own_count(broker: BrokerProcess,
                                                        unique_topic) -> None:
    # As a Faust worker's leader topic is made: one partition, beside the others.
    wide, one = unique_topic("wide"), unique_topic("one")
    report = ensure_topics(broker.bootstrap, 3, [wide, one], counts={one: 1}, timeout=20)
    assert report.partitions == {wide: 3, one: 1}
    again = ensure_topics(broker.bootstrap, 3, [wide, one], counts={one: 1}, timeout=20)
    assert again.created == [] and again.mismatched == {}


def test_ensure_topics_creates_every_pipeline_topic(fresh_broker: BrokerProcess) -> None:
    report = ensure_topics(fresh_broker.bootstrap, 2, timeout=20)
    assert sorted(report.created) == sorted(ALL_TOPICS)
    assert set(report.partitions.values()) == {2}
    # Whoever makes them, the journal and the claims keep every record, as a worker requires of
    # them: `mynapoint dev` made them this way with no settings, so on Apache Kafka its journal
    # had the cluster's 7-day retention.
    settings = topic_configs(fresh_broker.bootstrap, [topics.JOURNAL, topics.CLAIMS]).settings
    for name in (topics.JOURNAL, topics.CLAIMS):
        assert {k: settings[name].get(k) for k in topics.HISTORY_CONFIG} == topics.HISTORY_CONFIG


# -- produce ------------------------------------------------------------------------------------


def test_produce_api_sends_valid_lines_and_reports_bad_ones(
    fresh_broker: BrokerProcess, tmp_path: Path, consume
) -> None:
    path = tmp_path / "events.jsonl"
    _write_events(path)
    seen_bad = []
    report = produce_file(path, fresh_broker.bootstrap, partitions=3, on_bad=seen_bad.append)
    assert report.lines == len(VALID) + len(BAD)
    assert report.sent == _expected_counts()
    assert {b.lineno: b.reason for b in report.bad} == BAD
    assert seen_bad == report.bad
    assert all(b.message for b in report.bad)
    _assert_landed(consume, fresh_broker.bootstrap)


def test_produce_dry_run_sends_nothing(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    _write_events(path)
    # No broker at all: a dry run must not need one.
    report = produce_file(path, f"127.0.0.1:{free_port()}", dry_run=True)
    assert report.sent == _expected_counts()
    assert {b.lineno: b.reason for b in report.bad} == BAD


def test_produce_cli_sends_and_names_bad_lines(
    fresh_broker: BrokerProcess, tmp_path: Path, consume
) -> None:
    path = tmp_path / "events.jsonl"
    _write_events(path)
    result = subprocess.run(
        [
            MYNAPOINT,
            "produce",
            str(path),
            "--bootstrap",
            fresh_broker.bootstrap,
            "--partitions",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=CMD_TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    for lineno, reason in BAD.items():
        assert f"line {lineno}: {reason}:" in result.stderr
    for topic, n in _expected_counts().items():
        assert f"{topic}: {n}" in result.stderr
    _assert_landed(consume, fresh_broker.bootstrap)


def test_produce_cli_reads_stdin_uses_env_bootstrap_and_strict(
    fresh_broker: BrokerProcess, tmp_path: Path, consume
) -> None:
    path = tmp_path / "events.jsonl"
    _write_events(path)
    env = {**os.environ, "MYNAPOINT_BOOTSTRAP": fresh_broker.bootstrap}
    result = subprocess.run(
        [MYNAPOINT, "produce", "-", "--strict"],
        input=path.read_bytes(),
        capture_output=True,
        env=env,
        timeout=CMD_TIMEOUT,
    )
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr  # --strict: there were bad lines
    assert "<stdin> line 3: not_json:" in stderr
    _assert_landed(consume, fresh_broker.bootstrap)  # the valid lines were still sent


def test_produce_cli_unreachable_broker_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    _write_events(path)
    bootstrap = f"127.0.0.1:{free_port()}"  # nothing listens there
    result = subprocess.run(
        [MYNAPOINT, "produce", str(path), "--bootstrap", bootstrap],
        capture_output=True,
        text=True,
        timeout=CMD_TIMEOUT,
    )
    assert result.returncode == 2
    assert f"cannot reach a Kafka broker at {bootstrap}" in result.stderr
    assert "mynapoint broker" in result.stderr
    assert "Traceback" not in result.stderr


def test_produce_cli_missing_file(tmp_path: Path) -> None:
    result = subprocess.run(
        [MYNAPOINT, "produce", str(tmp_path / "nope.jsonl"), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=CMD_TIMEOUT,
    )
    assert result.returncode == 2
    assert "cannot read" in result.stderr


@pytest.mark.parametrize("partitions", [1, 4])
def test_produce_many_events_in_batches(
    fresh_broker: BrokerProcess, tmp_path: Path, consume, partitions: int
) -> None:
    path = tmp_path / "many.jsonl"
    n = 3000
    lines = [_ev(f"m{i}", "account.registered", f"p{i % 37}") for i in range(n)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = produce_file(path, fresh_broker.bootstrap, partitions=partitions)
    assert report.sent == Counter({TOPIC_BY_TYPE["account.registered"]: n})
    records = consume(fresh_broker.bootstrap, [TOPIC_BY_TYPE["account.registered"]], timeout=30)
    assert sorted(r.value for r in records) == sorted(line.encode() for line in lines)


def test_local_broker_refuses_a_port_in_use(broker: BrokerProcess, make_test_broker) -> None:
    with pytest.raises(BrokerError, match="in use"):
        make_test_broker(port=broker.port).start()
    assert run_blocking(probe(broker.bootstrap, timeout=5))  # the running one is unharmed
