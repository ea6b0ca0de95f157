"""`mynapoint takeover` on a real Apache Kafka: a deployment moves from Faust to Quix Streams and back
while a history goes through it, a third of it on each run, and what is published in the end is
what `simulate` decides for the whole history (every repeat exact, nothing lost or decided twice
differently). The state each engine left (records, timelines, claim holders) is what the next one
goes on from: a person whose events span the three runs is decided on all of them.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from schemas import topics
from tests.integration.conftest import TEST_WORKERS
from tests.integration.test_pipeline import (
    DEMO_CONFIG,
    Outcomes,
    _assert_equivalent,
    _history,
    _produce,
)
from tests.integration.workers import WorkerProcess

ROOT = Path(__file__).resolve().parents[2]
APP_ID = "mynapoint-takeover-it"

# Tansu keeps a stopped worker in the group's members: the command refuses, and the other
# engine's workers could not join the group (another group protocol than the stopped member's).
pytestmark = [
    pytest.mark.engines("kafka"),
    pytest.mark.skipif(not {"faust", "quix"} <= set(TEST_WORKERS),
                       reason="a takeover needs both engines (MYNAPOINT_TEST_WORKERS leaves one out)"),
]


def person_of(line: bytes) -> str | None:
    try:
        return msgspec.json.decode(line).get("person_id")
    except (msgspec.DecodeError, AttributeError):
        return None


def run_takeover(bootstrap: str, to: str, work_dir: Path | None = None,
                 ) -> subprocess.CompletedProcess[str]:
    extra = ["--work-dir", str(work_dir)] if work_dir is not None else []
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "takeover", "--to", to, "--bootstrap", bootstrap,
         "--app-id", APP_ID, "--timeout", "120", *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=300)


def takeover(bootstrap: str, to: str, work_dir: Path | None = None) -> str:
    """Runs `mynapoint takeover --to TO`; a worker that has just stopped may still be a member of
    the group for a moment (until the broker sees it leave): that refusal is retried."""
    deadline = time.monotonic() + 120
    while True:
        done = run_takeover(bootstrap, to, work_dir)
        if done.returncode == 0:
            return done.stdout
        assert "still running" in done.stderr, done.stderr
        assert time.monotonic() < deadline, done.stderr
        time.sleep(1)  # waiting for the group to be empty, not for luck


def persons_changelog(engine: str) -> str:
    """The changelog that holds the persons' records on `engine`."""
    if engine == "quix":
        return topics.quix_changelog_topic(APP_ID, topics.JOURNAL)
    return topics.changelog_topic(APP_ID, "persons")


def test_takeover_from_faust_to_quix_and_back_goes_on_where_each_stopped(fresh_broker, tmp_path):
    bootstrap = fresh_broker.bootstrap
    lines = _history(people=400, seed=29)
    n = len(lines)
    parts = [lines[: n // 3], lines[n // 3: 2 * n // 3], lines[2 * n // 3:]]
    spanning = set.intersection(*({person_of(line) for line in part} for part in parts))
    assert len(spanning) >= 50  # people decided by all three runs
    sent = 0
    for run, engine in enumerate(("faust", "quix", "faust")):
        if run:
            work = tmp_path / f"work-{run}"
            work.mkdir()
            out = takeover(bootstrap, engine, work)
            assert list(work.iterdir()) == []  # the rows kept on disk there are gone
            assert f"to {engine}" in out
            assert f"{persons_changelog(engine)}: " in out, out
            # The state lives in one engine's changelogs only: a second takeover says where.
            again = run_takeover(bootstrap, engine)
            assert again.returncode == 2 and "taken over already" in again.stderr, again.stderr
            retired = out.split("retired:")[1].splitlines()[0]
            source = "faust" if engine == "quix" else "quix"
            assert persons_changelog(source) in retired, out
        logs = tmp_path / f"logs-{run}"
        logs.mkdir()
        worker = WorkerProcess(fresh_broker, tmp_path / f"data-{run}", logs, config=DEMO_CONFIG,
                               app_id=APP_ID, engine=engine).start()
        try:
            sent += _produce(bootstrap, parts[run])
            published = Outcomes(bootstrap).until_decisions(sent, 600, worker)
            if run == 2:
                stats = _assert_equivalent(bootstrap, published, worker, sent)
                assert stats["people"] >= 300
        finally:
            worker.stop()
