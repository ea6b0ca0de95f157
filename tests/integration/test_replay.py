"""Replay, export, explain and audit against a live pipeline on the suite's own broker.

After a live run, `mynapoint replay --bootstrap` rebuilds everyone from the journal and finds
nothing different from what the worker published and stored (while the worker keeps running and
keeps deciding); an export replayed offline gives the same report; `explain` tells a person's
story; a tampered grant record is found.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from clients.connect import run_blocking
from clients.produce import produce_lines
from devtools.demo import generate
from schemas import topics
from tests.integration.conftest import consume_sync
from tests.integration.test_pipeline import Outcomes
from tests.integration.workers import WorkerProcess, card_on_2020_08_01, wait_for

ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = str(ROOT / "streams" / "data" / "demo.toml")
APP_ID = "mynapoint-replay-it"


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def _replay(*source: str) -> tuple[int, dict[str, Any]]:
    done = _cli("replay", *source, "--config", DEMO_CONFIG, "--app-id", APP_ID, "--json",
                "--timeout", "60")
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def _produce(bootstrap: str, lines: list[bytes]) -> int:
    report = run_blocking(produce_lines(lines, bootstrap, partitions=4, timeout=60))
    return sum(report.sent.values())


@pytest.fixture
def live(fresh_broker, tmp_path, worker_engine):
    """A worker on a fresh broker; yields (bootstrap, worker)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    worker = WorkerProcess(fresh_broker, tmp_path / "data", logs, config=DEMO_CONFIG,
                           app_id=APP_ID, engine=worker_engine).start()
    try:
        yield fresh_broker.bootstrap, worker
    finally:
        worker.stop()


def _run(bootstrap: str, worker: WorkerProcess, people: int, seed: int) -> int:
    sent = _produce(bootstrap, list(generate(people=people, seed=seed, bad_ratio=0.002)))
    Outcomes(bootstrap).until_decisions(sent, 240, worker)
    return sent


def _until_clean(bootstrap: str, worker: WorkerProcess) -> dict[str, Any]:
    """Replays until nothing differs (the table changelog may trail the outcomes a little)."""
    last: dict[str, Any] = {}

    def clean() -> bool:
        rc, report = _replay("--bootstrap", bootstrap)
        last.clear()
        last.update(report)
        return rc == 0

    try:
        wait_for(clean, 90, "replay --bootstrap to report no differences", poll=1.0,
                 worker=worker)
    except AssertionError:
        raise AssertionError(json.dumps(last, indent=1)[:4000]) from None
    return last


def _new_person(person: str) -> list[bytes]:
    enc = msgspec.json.encode
    return [
        card_on_2020_08_01(person),
        enc({"event_id": f"{person}-s", "type": "card.suspended", "person_id": person,
             "occurred_at": "2020-08-02T09:00:00+09:00"}),
    ]


def test_replay_export_and_explain_after_a_live_run(live, tmp_path):
    bootstrap, worker = live
    sent = _run(bootstrap, worker, people=300, seed=13)

    # Replay while the worker runs: nothing differs, everyone was compared with the table.
    report = _until_clean(bootstrap, worker)
    assert report["events"] == sent
    assert report["people"] >= 250 and report["tables_compared"] == report["people"]
    assert report["outcomes"]["compared"] == report["outcomes"]["replayed"] > sent
    assert report["published_rules_versions"].keys() == {report["rules_version"]}

    # The export, replayed offline, gives the same report.
    export = tmp_path / "history.jsonl"
    done = _cli("export", "--bootstrap", bootstrap, "--config", DEMO_CONFIG, "--app-id", APP_ID,
                "-o", str(export))
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr
    rc, offline = _replay("--file", str(export))
    assert rc == 0
    # Exported without the workers' configuration: the file would record RULES.md's defaults,
    # which replay, explain and whatif then take from it. The exporter is told at once.
    defaults = subprocess.run(
        [sys.executable, "-m", "cli.main", "export", "--bootstrap", bootstrap, "--app-id", APP_ID,
         "-o", str(tmp_path / "defaults.jsonl")], cwd=ROOT, capture_output=True, text=True,
        timeout=120, env={k: v for k, v in os.environ.items() if k != "MYNAPOINT_CONFIG"})
    assert defaults.returncode == 0, defaults.stderr
    assert (f"warning: the exported outcomes carry rules version(s) {report['rules_version']} "
            "(") in defaults.stderr
    assert f"), not {report['rules_version']}" not in defaults.stderr
    for r in (report, offline):
        r.pop("source"), r.pop("config")
    assert offline == report

    # A person from the live run, explained from the topics and from the export.
    done = _cli("explain", "P0000042", "--bootstrap", bootstrap, "--config", DEMO_CONFIG)
    assert done.returncode == 0, done.stderr
    assert "P0000042-001" in done.stdout and "受付" in done.stdout and "accepted" in done.stdout
    assert "points per campaign" in done.stdout and "note:" not in done.stdout
    done = _cli("explain", "P0000042", "--file", str(export), "--json")
    assert done.returncode == 0, done.stderr
    story = json.loads(done.stdout)
    assert story["found"] and story["notes"] == [] and story["timeline"]
    assert all(item["decision"] is not None for item in story["timeline"])
    # From the topics, only the person's journal partition is read: the same story.
    done = _cli("explain", "P0000042", "--bootstrap", bootstrap, "--config", DEMO_CONFIG,
                "--json")
    assert done.returncode == 0, done.stderr
    assert {**json.loads(done.stdout), "source": None} == {**story, "source": None}

    done = _cli("audit", "--bootstrap", bootstrap, "--json")
    assert done.returncode == 0, done.stderr
    audit = json.loads(done.stdout)
    # Identical decisions on repeated inputs share an id: the audit counts them once.
    assert sent - 20 <= audit["decisions"]["total"] <= sent and not audit["conflicting_ids"]

    # What-if from the topics: the rules the worker ran with change nothing; a baseline other
    # than those (none given: RULES.md's defaults) is pointed out from the last decisions.
    done = _cli("whatif", "--bootstrap", bootstrap, "--config", DEMO_CONFIG, "--baseline",
                DEMO_CONFIG, "--app-id", APP_ID, "--json")
    assert done.returncode == 0, done.stderr
    same = json.loads(done.stdout)
    assert same["inputs_decided"] == sent and same["totals"]["net_change"] == 0
    assert same["published_rules_versions"].keys() == {report["rules_version"]}
    done = _cli("whatif", "--bootstrap", bootstrap, "--config", DEMO_CONFIG, "--app-id", APP_ID)
    assert done.returncode == 0, done.stderr
    assert (f"note: the last 16 decisions of each partition of the decisions topic carry rules "
            f"version(s) {report['rules_version']}") in done.stdout

    # Replay joined no group and moved no offsets: the worker goes on deciding.
    more = _new_person("Z0000001")
    sent += _produce(bootstrap, more)
    Outcomes(bootstrap).until_decisions(sent, 120, worker)
    report = _until_clean(bootstrap, worker)
    assert report["events"] == sent


def test_a_tampered_grant_is_reported(live, tmp_path):
    bootstrap, worker = live
    _run(bootstrap, worker, people=150, seed=17)
    _until_clean(bootstrap, worker)

    grants = [r for r in consume_sync(bootstrap, [topics.GRANTS], timeout=60)]
    original = next(r for r in grants if msgspec.json.decode(r.value)["points"] > 0)
    grant = msgspec.json.decode(original.value)
    forged = {**grant, "points": grant["points"] + 1000}

    async def send() -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topics.GRANTS, msgspec.json.encode(forged),
                                         key=original.key)
        finally:
            await producer.stop()

    run_blocking(send())
    rc, report = _replay("--bootstrap", bootstrap)
    assert rc == 1
    assert report["differences"] == {"content_differs": 1}
    (example,) = report["examples"]
    assert example["outcome_id"] == grant["outcome_id"]
    assert example["published"]["points"] == grant["points"] + 1000
    assert example["replayed"]["points"] == grant["points"]

    export = tmp_path / "tampered.jsonl"
    done = _cli("export", "--bootstrap", bootstrap, "--config", DEMO_CONFIG, "--app-id", APP_ID,
                "-o", str(export))
    assert done.returncode == 0, done.stderr
    rc, offline = _replay("--file", str(export))
    assert rc == 1 and offline["differences"] == report["differences"]
    assert offline["examples"] == report["examples"]

    done = _cli("audit", "--file", str(export), "--json")
    assert [c["outcome_id"] for c in json.loads(done.stdout)["conflicting_ids"]] == [
        grant["outcome_id"]]


def test_replay_says_when_the_broker_cannot_be_reached():
    from clients.connect import free_port

    done = _cli("replay", "--bootstrap", f"127.0.0.1:{free_port()}", "--timeout", "5",
                timeout=60)
    assert done.returncode == 2
    assert "cannot reach a Kafka broker" in done.stderr
