"""The status API (agents/web.py) on two live workers of one consumer group, on the real broker.

Both workers are asked about people on every partition: each answer must be the owner's (Faust's
table routing forwards requests for the other worker's partitions), the same from both, correct
(points equal the person's grants on mynapoint.grants; the history is exactly the person's
published outcomes, also for histories longer than one chunk of the `timeline` table) and shaped as the served OpenAPI description says.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import msgspec
import pytest

from clients.connect import run_blocking
from clients.produce import produce_lines
from devtools.demo import generate
from schemas import topics
from schemas.outcomes import Decision
from streams.audit.simulate import run
from streams.core.config import load_config
from streams.core.timeline import CHUNK_LINES
from tests.integration.conftest import consume_sync
from tests.integration.workers import OUTCOME_TOPICS, WorkerProcess, partition_of, worker_group
from tests.schema_shapes import assert_fits

ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = str(ROOT / "streams" / "data" / "demo.toml")
TOKEN = "it-status-token-0123456789"
PARTITIONS = 4
STATUS = "/persons/{person_id}"
HISTORY = "/persons/{person_id}/history"


def http(port: int, path: str, *, token: str | None = TOKEN, method: str = "GET",
         timeout: float = 20.0) -> tuple[int | None, Any]:
    """(status, decoded JSON body or raw bytes); status None when nothing answered."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return None, b""
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


def wait_until(check, timeout: float, what: str, workers: list[WorkerProcess],
               poll: float = 1.0) -> None:
    """Polls `check()` (None when satisfied, else a description of what is still wrong)."""
    deadline = time.monotonic() + timeout
    last = "never checked"
    while time.monotonic() < deadline:
        for w in workers:
            w.assert_alive()
        problem = check()
        if problem is None:
            return
        last = problem
        time.sleep(poll)  # polling a condition, not waiting on luck
    tails = "\n".join(f"--- worker on port {w.web_port}:\n{w.log_tail(15)}" for w in workers)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; last: {last}\n{tails}")


def unsettled_points(person: str, status: dict[str, Any],
                     outcomes: list[dict[str, Any]]) -> str | None:
    """None once the `status` document counts every grant among the person's published
    `outcomes`, else what differs. An outcome can be out before its state is readable (the Quix
    engine writes its stores at the checkpoint after the send)."""
    total = sum(c["points"] for c in status["campaigns"].values())
    granted = sum(o["points"] for o in outcomes if o["kind"] == "grant")
    if total != granted:
        return f"{person}: {total} points, the published grants say {granted}"
    return None


def published_outcomes(bootstrap: str, decisions: int, timeout: float,
                       workers: list[WorkerProcess]) -> list[dict[str, Any]]:
    """Distinct outcomes (first occurrence of each outcome_id), once `decisions` are out (on a
    timeout, the error shows how many were and the `workers`' last log lines)."""
    seen: set[str] = set()
    read = {"n": 0}

    def enough(records: list[Any]) -> bool:
        for r in records[read["n"]:]:
            if r.topic == topics.DECISIONS:
                seen.add(msgspec.json.decode(r.value)["outcome_id"])
        read["n"] = len(records)
        return len(seen) >= decisions

    try:
        consume_sync(bootstrap, OUTCOME_TOPICS, until=enough, timeout=timeout)
    except AssertionError as exc:
        tails = "\n".join(f"--- worker on port {w.web_port}:\n{w.log_tail(40)}" for w in workers)
        raise AssertionError(f"{len(seen)} of {decisions} distinct decisions published: {exc}\n"
                             f"{tails}") from None
    # Read on to the high watermark, so grants published just after the last decision count.
    records = consume_sync(bootstrap, OUTCOME_TOPICS, timeout=timeout)
    distinct: dict[str, dict[str, Any]] = {}
    for r in records:
        o = msgspec.json.decode(r.value)
        distinct.setdefault(o["outcome_id"], o)
    return list(distinct.values())


def _comparable(doc: dict[str, Any]) -> dict[str, Any]:
    """The status without its wall-clock instant (two requests are never at the same instant)."""
    wait = {k: v for k, v in doc["renewal_wait_now"].items() if k != "evaluated_at"}
    return {**doc, "renewal_wait_now": wait}


@pytest.fixture
def two_workers(fresh_broker, tmp_path, worker_engine):
    with worker_group(fresh_broker, tmp_path, 2, partitions=PARTITIONS, config=DEMO_CONFIG,
                      app_id="mynapoint-status-it", extra_args=["--status-token", TOKEN],
                      engine=worker_engine) as workers:
        yield workers


def test_status_api_answers_for_every_partition_from_both_workers(fresh_broker, two_workers):
    workers = two_workers
    bootstrap = fresh_broker.bootstrap

    def web_servers_up() -> str | None:
        for w in workers:
            status, _ = http(w.web_port, "/openapi.json")
            if status != 200:
                return f"port {w.web_port} answered {status}"
        return None

    wait_until(web_servers_up, 120, "both web servers", workers)

    def both_ready() -> str | None:
        # The probes answer without the token: an orchestrator's probe carries no secret.
        for w in workers:
            assert http(w.web_port, "/livez", token=None) == (200, {"status": "ok"})
            status, body = http(w.web_port, "/readyz", token=None)
            if status != 200:
                assert status == 503 and set(body) == {"error"}, body
                return f"port {w.web_port}: {status} {body}"
        return None

    wait_until(both_ready, 120, "both workers ready (in their group, nothing to recover)",
               workers)

    lines = list(generate(people=300, seed=23, bad_ratio=0.0))
    # One decision per event, but not one outcome id per decision: an event sent a third time is
    # refused duplicate_* again, with the same id as the second time. Count ids as simulate does.
    expected_ids = {o.outcome_id for batch in run(lines, load_config(DEMO_CONFIG))
                    for o in batch if type(o) is Decision}
    report = run_blocking(produce_lines(lines, bootstrap, partitions=PARTITIONS, timeout=120))
    assert report.total_sent == len(lines)
    outcomes = published_outcomes(bootstrap, len(expected_ids), timeout=600, workers=workers)

    by_person: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for o in outcomes:
        by_person[o["person_id"]].append(o)
    points: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for o in outcomes:
        if o["kind"] == "grant":
            points[o["person_id"]][o["campaign"]] += o["points"]

    # People on every partition: some with points, one without, and anyone with an alert.
    sample: list[str] = []
    for p in range(PARTITIONS):
        here = sorted(person for person in by_person if partition_of(person, PARTITIONS) == p)
        earning = [x for x in here if sum(points[x].values()) > 0]
        idle = [x for x in here if x not in earning]
        alerted = [x for x in here if any(o["kind"] == "alert" for o in by_person[x])]
        # The longest history too: more than CHUNK_LINES outcomes spans chunks of the table.
        longest = max(here, key=lambda x: len(by_person[x]))
        picked = earning[:3] + idle[:1] + alerted[:1] + [longest]
        assert earning, f"no person with points on partition {p}"
        sample.extend(dict.fromkeys(picked))
    assert {partition_of(x, PARTITIONS) for x in sample} == set(range(PARTITIONS))
    assert max(len(by_person[x]) for x in sample) > CHUNK_LINES

    openapi = http(workers[0].web_port, "/openapi.json")[1]
    assert openapi["openapi"] == "3.1.0"
    for w in workers:
        assert_fits(http(w.web_port, "/readyz", token=None)[1], openapi, "/readyz", 200)
        assert http(w.web_port, "/readyz", token=None, method="POST")[0] == 401
    assert http(workers[1].web_port, "/openapi.json")[1] == openapi

    answers: dict[str, list[dict[str, Any]]] = {}

    def all_answered_alike() -> str | None:
        for person in sample:
            docs = []
            for w in workers:
                status, doc = http(w.web_port, f"/persons/{person}")
                if status != 200:
                    return f"{person} on port {w.web_port}: {status} {doc}"
                docs.append(doc)
            if _comparable(docs[0]) != _comparable(docs[1]):
                return f"{person}: the workers differ: {docs}"
            unsettled = unsettled_points(person, docs[0], by_person[person])
            if unsettled is not None:
                return unsettled
            answers[person] = docs
        return None

    # Rebalances with two workers take a while (10 s session timeouts): wait for a stable group.
    wait_until(all_answered_alike, 300, "both workers to answer alike for every sampled person",
               workers)

    owners: set[str] = set()
    for person, docs in answers.items():
        for doc in docs:
            assert_fits(doc, openapi, STATUS, 200)
            assert doc["person_id"] == person
            assert doc["served_by"]["partition"] == partition_of(person, PARTITIONS)
            for campaign, c in doc["campaigns"].items():
                assert c["points"] == points[person].get(campaign, 0), (person, campaign)
                assert c["remaining"] == max(c["cap"] - c["points"], 0)
            assert doc["renewal_wait_now"]["clock"] == "worker_wall_clock"
            assert doc["pending_requests"] == 0
        # Both answers come from the one owner of the partition.
        assert docs[0]["served_by"] == docs[1]["served_by"]
        owners.add(docs[0]["served_by"]["worker"])
    # Each worker owns some partitions, so half of the answers above were forwarded.
    assert owners == {f"http://127.0.0.1:{w.web_port}" for w in workers}, owners

    for person in sample:
        expected = by_person[person]
        decisions = [o["outcome_id"] for o in expected if o["kind"] == "decision"]
        histories = []
        for w in workers:
            status, doc = http(w.web_port, f"/persons/{person}/history")
            assert status == 200, (person, w.web_port, doc)
            assert_fits(doc, openapi, HISTORY, 200)
            histories.append(doc)
        assert histories[0] == histories[1]
        got = histories[0]["outcomes"]
        assert all(o["person_id"] == person for o in got)
        assert {o["outcome_id"] for o in got} == {o["outcome_id"] for o in expected}, person
        # One topic per kind keeps each kind's order: the decisions in the history follow it.
        assert [o["outcome_id"] for o in got if o["kind"] == "decision"] == decisions
        for o in got:
            assert "linked_person_id" not in o
        grants = sum(o["points"] for o in got if o["kind"] == "grant")
        assert grants == sum(points[person].values())

    unknown = "nobody-here-0"
    for w in workers:
        port = w.web_port
        # Refused before anything is read or routed.
        status, body = http(port, f"/persons/{sample[0]}", token=None)
        assert status == 401 and set(body) == {"error"}
        assert http(port, f"/persons/{sample[0]}", token="wrong")[0] == 401
        assert http(port, f"/persons/{sample[0]}/history", token=None)[0] == 401
        assert http(port, "/openapi.json", token=None)[0] == 401
        assert http(port, f"/persons/{sample[0]}", method="POST")[0] == 405
        # HEAD: GET's status without the body, forwarded to the owner like GET.
        for person in sample:
            assert http(port, f"/persons/{person}/history", method="HEAD") == (200, b""), person
        assert http(port, f"/persons/{unknown}", method="HEAD") == (404, b"")
        assert http(port, f"/persons/{sample[0]}", method="HEAD", token=None) == (401, b"")
        assert http(port, "/readyz", method="HEAD", token=None) == (200, b"")
        assert http(port, f"/persons/{sample[0]}", method="DELETE", token=None)[0] == 401
        for path in (STATUS, HISTORY):
            status, body = http(port, path.format(person_id=unknown))
            assert status == 404, (port, path, body)
            assert_fits(body, openapi, path, 404)
            for bad in ("123456789012", "x" * 65, "bad.id"):
                status, body = http(port, path.format(person_id=bad))
                assert status == 400, (bad, body)
                assert_fits(body, openapi, path, 400)
                assert bad not in json.dumps(body)
            assert_fits(http(port, path.format(person_id=sample[0]), token=None)[1], openapi,
                        path, 401)
        # Faust's own table and router endpoints would serve raw values and the cluster layout.
        assert http(port, f"/table/persons/{sample[0]}/")[0] == 404
        assert http(port, "/router/")[0] == 404
