"""What only a real Apache Kafka can show: the worker as users run it (no `--tansu-compat`) on the
broker they run, decided per person exactly as `simulate` decides the history in event-time order,
through a SIGKILL and restart, after its changelogs were really compacted, and through the loss
of one of two workers (the other takes its partitions, with a standby replica of its tables, and
in the exactly-once mode without one); and, in the exactly-once mode, a worker that lost its data
directory recovers its tables.

People who contend for one payment account are left out of the per-person comparison, as in every
broker test: across partitions the race is decided in arrival order at the account's claims
partition, which a single-threaded reference cannot reproduce (tests/integration/test_pipeline.py
checks that race on its own).
"""

from __future__ import annotations

import asyncio
import random
import shutil
import time
from collections import Counter
from typing import Any

import msgspec
import pytest

from clients.connect import run_blocking
from clients.produce import in_send_order, produce_lines
from devtools.demo import generate
from schemas import topics
from schemas.topics import changelog_topic
from tests.integration.conftest import consume_sync
from tests.integration.test_alignment import _contended, _per_person, _time_order_reference
from tests.integration.test_pipeline import (
    DEMO_CONFIG,
    Outcomes,
    _by_kind,
    _kill_at_random_moments,
)
from tests.integration.test_status_api import http
from tests.integration.workers import (
    OUTCOME_TOPICS,
    WorkerProcess,
    distinct_by_id,
    wait_for,
    worker_group,
)

pytestmark = pytest.mark.engines("kafka")

APP_ID = "mynapoint-it"


def _sorted_history(people: int, seed: int) -> list[bytes]:
    """A generated history (valid lines only) in the event-time order `mynapoint produce` sends."""
    return in_send_order(generate(people=people, seed=seed, bad_ratio=0.0))


def _produce(bootstrap: str, lines: list[bytes]) -> int:
    report = run_blocking(produce_lines(lines, bootstrap, partitions=4, timeout=120))
    assert not report.bad
    return sum(report.sent.values())


def _expect(lines: list[bytes]) -> tuple[dict[str, list[dict[str, Any]]], set[str], set[str]]:
    expected = _time_order_reference(lines)
    contended = _contended(expected)
    wanted = {o["outcome_id"] for p, outs in expected.items() if p not in contended for o in outs}
    return expected, contended, wanted


def _assert_as_simulate(published: list[dict[str, Any]],
                        expected: dict[str, list[dict[str, Any]]], contended: set[str]) -> None:
    got = _per_person(published)
    contended = contended | _contended(got)
    assert set(got) == set(expected)
    differ = [p for p in expected if p not in contended and _by_kind(got[p]) != _by_kind(expected[p])]
    assert not differ, (len(differ), differ[:5])
    assert len(contended) < len(expected) // 20  # the comparison covers nearly everyone
    assert not any(o.get("late") for outs in got.values() for o in outs)


def test_sigkill_and_restart_on_apache_kafka_decide_as_simulate(fresh_broker, tmp_path, worker_engine):
    # The "done when": 2,000 people in event-time order, the worker killed -9 and
    # restarted during the run, without --tansu-compat.
    lines = _sorted_history(2000, seed=31)
    expected, contended, wanted = _expect(lines)
    logs = tmp_path / "logs"
    logs.mkdir()
    worker = WorkerProcess(fresh_broker, tmp_path / "data", logs, config=DEMO_CONFIG,
                           engine=worker_engine).start()
    assert "--tansu-compat" not in worker.broker_flags
    try:
        sent = _produce(fresh_broker.bootstrap, lines)
        _kill_at_random_moments(worker, fresh_broker.bootstrap, sent, random.Random(31), 2, 0.7)
        published = Outcomes(fresh_broker.bootstrap).until_ids(wanted, 900, worker, expected)
        _assert_as_simulate(published, expected, contended)
    finally:
        worker.stop()


COMPACT_FAST = {
    "cleanup.policy": "compact",
    "segment.ms": "200",
    "min.cleanable.dirty.ratio": "0.01",
    "min.compaction.lag.ms": "0",
    "delete.retention.ms": "100",
}


def _changelogs(engine: str) -> list[str]:
    """The engine's changelog topics, the one holding the persons' records first."""
    if engine == "quix":
        return [topics.quix_changelog_topic(APP_ID, t) for t in (topics.JOURNAL, topics.CLAIMS)]
    return [changelog_topic(APP_ID, t) for t in topics.TABLES]


async def _create_compacting_changelogs(bootstrap: str, partitions: int,
                                        engine: str) -> list[str]:
    """The state's changelog topics, made before the worker would make them, with segments that
    roll every 200 ms and a cleaner that compacts whatever it can."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    names = _changelogs(engine)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics(
            [NewTopic(n, partitions, 1, topic_configs=COMPACT_FAST) for n in names])
        errors = [e for e in response.topic_errors if e[1] != 0]
        assert not errors, errors
    finally:
        await admin.close()
    return names


async def _journal_committed(bootstrap: str) -> bool:
    """Whether the workers' group committed every journal entry (each partition's end)."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.structs import TopicPartition

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(APP_ID)
        ends = await consumer.end_offsets([TopicPartition(topics.JOURNAL, p) for p in range(4)])
    finally:
        await consumer.stop()
        await admin.close()
    return all(committed.get(tp) is not None and committed[tp].offset >= end
               for tp, end in ends.items())


def _compacted_away(bootstrap: str, topic: str) -> int:
    """How many records of `topic` the log cleaner has removed: offsets written minus records
    still readable."""
    records = consume_sync(bootstrap, [topic], timeout=120)
    written = sum(r.offset + 1 for r in _last_per_partition(records).values())
    return written - len(records)


def _last_per_partition(records: list[Any]) -> dict[int, Any]:
    last: dict[int, Any] = {}
    for r in records:
        if r.partition not in last or r.offset > last[r.partition].offset:
            last[r.partition] = r
    return last


def test_recovery_after_the_changelogs_were_compacted(make_test_broker, tmp_path, worker_engine):
    lines = _sorted_history(600, seed=41)
    expected, contended, wanted = _expect(lines)
    half = len(lines) // 2
    logs = tmp_path / "logs"
    logs.mkdir()
    with make_test_broker(extra_config={"log.cleaner.backoff.ms": "200"}) as broker:
        persons = run_blocking(_create_compacting_changelogs(broker.bootstrap, 4,
                                                             worker_engine))[0]
        worker = WorkerProcess(broker, tmp_path / "data", logs, config=DEMO_CONFIG,
                               engine=worker_engine).start()
        try:
            # The first half in three parts, each decided and committed before the next is sent:
            # people active in several parts have their state written again in a later commit,
            # also by an engine that writes each changed key once per commit (Quix Streams).
            sent, third = 0, half // 3
            for part in (lines[:third], lines[third:2 * third], lines[2 * third:half]):
                sent += _produce(broker.bootstrap, part)
                Outcomes(broker.bootstrap).until_decisions(sent, 600, worker)
                wait_for(lambda: run_blocking(_journal_committed(broker.bootstrap)), 120,
                         "the journal's offsets committed", worker=worker)
            # Compaction runs on closed segments: wait (bounded) until the cleaner has removed
            # superseded person records, which it must, each person being written many times.
            deadline = time.monotonic() + 120
            while (removed := _compacted_away(broker.bootstrap, persons)) == 0:
                assert time.monotonic() < deadline, "the log cleaner never compacted persons"
                run_blocking(asyncio.sleep(1))  # the cleaner's own pace, not ours
            assert removed > 0
            worker.stop()
            shutil.rmtree(tmp_path / "data")  # the disk is lost: tables come from changelogs
            worker.start()
            sent += _produce(broker.bootstrap, lines[half:])
            published = Outcomes(broker.bootstrap).until_ids(wanted, 900, worker, expected)
            _assert_as_simulate(published, expected, contended)
        finally:
            worker.stop()


def test_failover_to_the_other_worker_with_a_standby(fresh_broker, tmp_path, worker_engine):
    lines = _sorted_history(1500, seed=51)
    expected, contended, wanted = _expect(lines)
    with worker_group(fresh_broker, tmp_path, 2, config=DEMO_CONFIG, engine=worker_engine,
                      extra_args=["--standby-replicas", "1"]) as (survivor, victim):
        sent = _produce(fresh_broker.bootstrap, lines)
        Outcomes(fresh_broker.bootstrap).until_decisions(sent // 3, 600, survivor)
        victim.kill()  # SIGKILL, and it stays down
        published = Outcomes(fresh_broker.bootstrap).until_ids(wanted, 900, survivor, expected)
        _assert_as_simulate(published, expected, contended)


def test_failover_in_the_exactly_once_mode_without_a_standby(fresh_broker, tmp_path, worker_engine):
    # The survivor takes the killed worker's partitions with no copy of their tables: it must
    # recover them from the changelogs. On Faust before `recover_to_the_end_in_exactly_once`,
    # recovery read nothing in this mode: 7,785 expected outcomes of 487 people on the two moved
    # partitions were never published (decided on empty tables).
    lines = _sorted_history(1500, seed=51)
    expected, contended, wanted = _expect(lines)
    with worker_group(fresh_broker, tmp_path, 2, config=DEMO_CONFIG, engine=worker_engine,
                      extra_args=["--standby-replicas", "0",
                                  "--processing-guarantee", "exactly_once"]) as (survivor, victim):
        sent = _produce(fresh_broker.bootstrap, lines)
        Outcomes(fresh_broker.bootstrap).until_decisions(sent // 3, 600, survivor)
        victim.kill()  # SIGKILL, and it stays down
        published = Outcomes(fresh_broker.bootstrap).until_ids(wanted, 900, survivor, expected)
        _assert_as_simulate(published, expected, contended)


def test_exactly_once_mode_under_sigkill_decides_as_simulate(fresh_broker, tmp_path, worker_engine):
    # The engine's exactly_once (Kafka transactions) on top of our effectively-once design:
    # decisions stay exactly those of simulate through SIGKILLs. On Faust, whatever repeats a
    # consumer still sees (our outcome sends are not inside Faust's transactions) are exact
    # repeats, read committed or not; on Quix Streams, whose checkpoint transactions hold the
    # outcomes too, a consumer reading committed records sees none. README "For SREs" gives what
    # each mode costs and repeats, measured (bench/bench_guarantee.py).
    lines = _sorted_history(500, seed=61)
    expected, contended, wanted = _expect(lines)
    logs = tmp_path / "logs"
    logs.mkdir()
    worker = WorkerProcess(fresh_broker, tmp_path / "data", logs, config=DEMO_CONFIG,
                           engine=worker_engine,
                           extra_args=["--processing-guarantee", "exactly_once"]).start()
    try:
        sent = _produce(fresh_broker.bootstrap, lines)
        _kill_at_random_moments(worker, fresh_broker.bootstrap, sent, random.Random(61), 2, 0.7)
        published = Outcomes(fresh_broker.bootstrap).until_ids(wanted, 900, worker, expected)
        _assert_as_simulate(published, expected, contended)
        committed = consume_sync(fresh_broker.bootstrap, OUTCOME_TOPICS, timeout=120,
                                 isolation_level="read_committed")
        outcomes = [msgspec.json.decode(r.value) for r in committed]
        distinct, _ = distinct_by_id(outcomes)
        assert {o["outcome_id"] for o in distinct} >= wanted
        if worker_engine == "quix":
            # The only repeats left are the ones simulate gives too: an event sent again gets
            # the very decision it got the first time.
            reference = _time_order_reference(lines, repeats=True)
            allowed = Counter(o["outcome_id"] for outs in reference.values() for o in outs)
            again = {i: n for i, n in Counter(o["outcome_id"] for o in outcomes).items()
                     if n > allowed.get(i, 1)}
            assert not again, (len(again), list(again.items())[:3])
    finally:
        worker.stop()


def _persisted_offsets(data_dir: Any) -> dict[tuple[str, int], int | None]:
    """(table, partition) -> the changelog offset a stopped Faust worker's RocksDB store records
    as applied (its recovery reads the changelog after it), read with Faust's own key."""
    from faust.stores.rocksdb import Store as RocksDBStore
    from rocksdict import AccessType, Rdict

    found: dict[tuple[str, int], int | None] = {}
    for path in sorted(data_dir.glob("**/tables/*.db")):
        table, partition = path.stem.rsplit("-", 1)
        db = Rdict(str(path), access_type=AccessType.read_only())
        try:
            value = db.get(RocksDBStore.offset_key)
        finally:
            db.close()
        found[(table, int(partition))] = None if value is None else int(value)
    return found


def _statuses(worker: WorkerProcess, people: list[str]) -> dict[str, Any]:
    """Each person's status answer (200 with the document, or 404), once the worker is ready."""
    answers: dict[str, Any] = {}

    def answered() -> bool:
        for person in people:
            if person not in answers:
                status, doc = http(worker.web_port, f"/persons/{person}", token=None)
                if status not in (200, 404):
                    return False  # not listening yet, or 503 while recovering
                if isinstance(doc, dict):
                    doc.pop("served_by", None)  # names this run's port
                    doc.get("renewal_wait_now", {}).pop("evaluated_at", None)  # the wall clock
                answers[person] = (status, doc)
        return True

    wait_for(answered, 120, "every person's status", worker=worker)
    return answers


@pytest.mark.workers("faust")
def test_exactly_once_worker_recovers_its_tables_after_losing_its_local_state(
        fresh_broker, tmp_path, worker_engine):
    # In the exactly-once mode Faust's recovery took a changelog's end from a fetch not made
    # yet: a worker that lost its local stores started with empty tables and decided on. Now it
    # reads every changelog to its end, and its stores record where they are, as in the other
    # mode (agents/faust_private.py `recover_to_the_end_in_exactly_once`, agents/tables.py).
    lines = _sorted_history(100, seed=67)
    expected, _, wanted = _expect(lines)
    people = sorted(expected)
    logs = tmp_path / "logs"
    logs.mkdir()
    data = tmp_path / "data"
    worker = WorkerProcess(fresh_broker, data, logs, config=DEMO_CONFIG, engine=worker_engine,
                           extra_args=["--processing-guarantee", "exactly_once"]).start()
    try:
        _produce(fresh_broker.bootstrap, lines)
        Outcomes(fresh_broker.bootstrap).until_ids(wanted, 300, worker, expected)
        before = _statuses(worker, people)
        assert all(status == 200 for status, _ in before.values())
        worker.stop()
        last: dict[tuple[str, int], int] = {}
        for table in topics.TABLES:
            for r in consume_sync(fresh_broker.bootstrap, [changelog_topic(APP_ID, table)],
                                  timeout=20):
                last[(table, r.partition)] = max(last.get((table, r.partition), -1), r.offset)
        assert {k for k in last if k[0] == "persons"} == {("persons", p) for p in range(4)}
        persisted = _persisted_offsets(data)
        assert {k: persisted.get(k) for k in last} == last
        shutil.rmtree(data)
        worker.start()
        after = _statuses(worker, people)
        differ = {p: (before[p], after[p]) for p in people if after[p] != before[p]}
        assert not differ, (len(differ), list(differ.items())[:2])
    finally:
        worker.stop()
