"""Issue 12, part 1: a history ordered per person (each person's lines in time order, people one
after another, as an export per person or a bulk load gives) sent with `mynapoint produce` is
decided, per person, exactly as `simulate` decides the same history in event-time order. With
`--keep-order` the same file is decided late and wrongly: what the default order prevents."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from devtools.brokers import BrokerProcess
from devtools.demo import generate
from schemas.codec import EVENT_DECODER
from tests.integration.test_alignment import _contended, _per_person, _time_order_reference
from tests.integration.test_pipeline import DEMO_CONFIG, Outcomes, _by_kind
from tests.integration.workers import WorkerProcess

ROOT = Path(__file__).resolve().parents[2]
PEOPLE = 2000


def _per_person_file(lines: list[bytes]) -> list[bytes]:
    """The generated history regrouped by person: each person's lines in their generated order
    (time order, but for the late-reported payments of the demo), people in order of first
    appearance. Across people the file is far from time order."""
    people: dict[str, list[bytes]] = {}
    for line in lines:
        people.setdefault(EVENT_DECODER.decode(line).person_id, []).append(line)
    return [line for person_lines in people.values() for line in person_lines]


def _produce_cli(bootstrap: str, path: Path, *extra: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "produce", str(path), "--bootstrap", bootstrap,
         "--partitions", "4", *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


def _decide(broker: BrokerProcess, tmp: Path, path: Path, sent: int, *extra: str,
            wanted: set[str] | None = None,
            engine: str = "faust") -> tuple[str, dict[str, list[dict[str, Any]]]]:
    data, logs = tmp / "data", tmp / "logs"
    logs.mkdir(parents=True)
    report = _produce_cli(broker.bootstrap, path, *extra)
    assert "would send" not in report and f"{sent} events, bad lines: 0" in report, report
    # The worker starts on the whole backlog: the aligner then orders by what the broker holds,
    # not by how fast anything runs, so the order under test is the one `produce` sent.
    worker = WorkerProcess(broker, data, logs, config=DEMO_CONFIG, engine=engine).start()
    try:
        published = Outcomes(broker.bootstrap).until_decisions(sent, 900, worker)
        if wanted is not None:
            published = Outcomes(broker.bootstrap).until_ids(wanted, 300, worker)
        return report, _per_person(published)
    finally:
        worker.stop()


def test_a_file_in_person_order_is_decided_as_in_event_time_order(tmp_path: Path,
                                                                 make_test_broker,
                                                                 worker_engine: str) -> None:
    lines = _per_person_file(list(generate(people=PEOPLE, seed=12, bad_ratio=0.0)))
    path = tmp_path / "per-person.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    expected = _time_order_reference(lines)
    assert len(expected) == PEOPLE
    contended = _contended(expected)
    wanted = {o["outcome_id"] for p, outs in expected.items() if p not in contended for o in outs}

    with make_test_broker() as broker:
        report, got = _decide(broker, tmp_path / "sorted", path, len(lines), wanted=wanted,
                              engine=worker_engine)
    moved = re.search(r"order: event time \(occurred_at, then topic order\): (\d+) of (\d+) "
                      r"events moved", report)
    assert moved, report
    assert int(moved.group(2)) == len(lines)
    assert int(moved.group(1)) > len(lines) // 2  # most lines were out of time order
    contended |= _contended(got)
    assert set(got) == set(expected)
    differ = [p for p in expected if p not in contended and _by_kind(got[p]) != _by_kind(expected[p])]
    assert not differ, (len(differ), differ[:5])
    assert not any(o.get("late") for outs in got.values() for o in outs)
    assert len(contended) < PEOPLE // 20  # the comparison covers nearly everyone

    # The same file in its own order: what integrators following the old advice got.
    with make_test_broker() as broker:
        report, kept = _decide(broker, tmp_path / "kept", path, len(lines), "--keep-order")
    assert "order: the file's (--keep-order)" in report
    assert sum(1 for outs in kept.values() for o in outs if o.get("late")) > len(lines) // 2
    wrong = [p for p in expected if p not in contended
             and _by_kind(_unmarked(kept.get(p, []))) != _by_kind(expected[p])]
    assert len(wrong) > PEOPLE // 4, len(wrong)


def _unmarked(outcomes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Outcomes without the late mark, so that only a different decision counts as different."""
    out = []
    for o in outcomes:
        o = {k: v for k, v in o.items() if k != "late"}
        if o["outcome_id"].endswith("-late"):
            o["outcome_id"] = o["outcome_id"].removesuffix("-late")
        out.append(o)
    return out
