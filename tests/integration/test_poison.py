"""No record stops an agent: garbage on the pipeline's own topics (journal, claims), produced before
a history, becomes dead letters naming the record, and every event after it is still decided."""

from __future__ import annotations

from pathlib import Path

import msgspec

from clients.connect import run_blocking
from clients.produce import produce_lines
from devtools.demo import generate
from schemas import topics
from tests.integration.conftest import consume_sync
from tests.integration.workers import WorkerProcess, is_valid_line, produce_raw

ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = str(ROOT / "streams" / "data" / "demo.toml")
GARBAGE = [b"", b"\xc1\xc1", b'{"k": "event"}', msgspec.msgpack.encode({"k": "event", "v": 99})]


def test_garbage_on_internal_topics_is_dead_lettered_and_decisions_go_on(fresh_broker, tmp_path, worker_engine):
    bootstrap = fresh_broker.bootstrap
    logs = tmp_path / "logs"
    logs.mkdir()
    worker = WorkerProcess(fresh_broker, tmp_path / "data", logs, config=DEMO_CONFIG, engine=worker_engine).start()
    try:
        # Keyed like real records (produce_raw keys by a person_id it finds; these have none, so
        # they go unkeyed): the first records the ledger and the claims agent read are garbage.
        produce_raw(bootstrap, topics.JOURNAL, GARBAGE)
        produce_raw(bootstrap, topics.CLAIMS, GARBAGE)
        lines = [line for line in generate(people=100, seed=41, bad_ratio=0.0)
                 if is_valid_line(line)]
        report = run_blocking(produce_lines(lines, bootstrap, partitions=4, timeout=120))
        assert sum(report.sent.values()) == len(lines)

        def decided(records) -> bool:
            worker.assert_alive()
            return sum(1 for r in records if r.topic == topics.DECISIONS) >= len(lines)

        records = consume_sync(bootstrap, [topics.DECISIONS, topics.DEADLETTER], until=decided,
                               timeout=300)
        dead = [msgspec.json.decode(r.value) for r in records if r.topic == topics.DEADLETTER]
        by_topic = {t: sorted(d["reason"] for d in dead if d["topic"] == t)
                    for t in (topics.JOURNAL, topics.CLAIMS)}
        assert by_topic == {topics.JOURNAL: ["unreadable_journal_entry"] * len(GARBAGE),
                            topics.CLAIMS: ["unreadable_claim"] * len(GARBAGE)}
        for d in dead:
            assert d["offset"] >= 0 and d["outcome_id"] == f"{d['topic']}/{d['partition']}/{d['offset']}"
            assert "only mynapoint workers may write" in d["error"]
    finally:
        worker.stop()
