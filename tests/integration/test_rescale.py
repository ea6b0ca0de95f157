"""`mynapoint rescale` on a real Apache Kafka, with the workers of either engine (the rescale
rebuilds the state changelogs in the layout of the engine the app runs on): half of a history
decided on 4 partitions, the worker stopped, a slice sent while no worker runs (records sent
before the growth that no worker consumed), rescale to 8, a worker with `--partitions 8` on a fresh data dir, the rest sent: per
person exactly what `simulate` gives for the whole history in event-time order; no payment
account granted to two people; the reservation count carried over. Also with the rescale
stopped half-way through rewriting the journal, then run again. And the refusals: a worker
still running, M not larger, another rules configuration. And partitions added by hand (Kafka's
own CreatePartitions, which moves nothing): a worker refuses to start on them, and a rescale to a
larger count repairs them. A worker SIGKILLed in the middle of its work, in either processing
mode, then a rescale: the same. A journal partition emptied by DeleteRecords: refused before
anything changes, and replay names it.

After it, replay of the topics finds nothing to differ, and replays of two halves of the
journal partitions add up to it (`replay --partitions`, `replay --combine`).

Contended people are left out of the per-person comparison, as in every broker test
(tests/integration/test_kafka.py says why).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import msgspec
import pytest

from clients.offline import state_rows, state_topics
from clients.rescale import CRASH_ENV, SOURCE_HEADER
from schemas import topics
from schemas.journal import AnswerEntry
from streams.audit.takeover import faust_row
from streams.core.claims import BUDGET_COUNT_KEY, RESERVED_PREFIX
from streams.core.versions import journal_entries
from tests.integration.conftest import consume_sync
from tests.integration.test_kafka import _assert_as_simulate, _expect, _produce, _sorted_history
from tests.integration.test_pipeline import DEMO_CONFIG, Outcomes
from tests.integration.workers import (
    OUTCOME_TOPICS,
    ROOT,
    WorkerProcess,
    refused_start,
    wait_for,
)

pytestmark = pytest.mark.engines("kafka")

APP_ID = "mynapoint-it"
PEOPLE = 800
#: How long the worker at 8 partitions gets to publish every expected outcome (seconds).
RESCALE_WAIT = 900


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=900,
                          env={**os.environ, **(env or {})})


def _rescale(bootstrap: str, state: Path, *, to: int = 8, config: str | None = DEMO_CONFIG,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    args = ["rescale", "--bootstrap", bootstrap, "--to-partitions", str(to), "--app-id", APP_ID,
            "--state", str(state)]
    if config:
        args += ["--config", config]
    return _cli(*args, env=env)


def _partition_counts(bootstrap: str, engine: str) -> dict[str, int]:
    from clients.connect import run_blocking
    from clients.history import read_topics

    names = [*topics.INPUT_TOPICS, *topics.OUTPUT_TOPICS, topics.JOURNAL, topics.CLAIMS,
             *state_topics(engine, APP_ID).values()]
    dump = run_blocking(read_topics(bootstrap, names, tail=0, timeout=60))
    return dump.partitions


def _claims_table(bootstrap: str, engine: str) -> dict[bytes, bytes]:
    """The live claims rows (latest value per row key), from the engine's changelog."""
    topic = state_topics(engine, APP_ID)["claims" if engine == "faust" else topics.CLAIMS]
    rows = state_rows(engine, consume_sync(bootstrap, [topic], timeout=120))
    if engine == "faust":
        return rows
    out = {}
    for key, value in rows.items():
        found = faust_row(topics.CLAIMS, key)
        assert found is not None, key
        out[found[1]] = value
    return out


def _assert_claims_hold(bootstrap: str, expected: dict[str, list[dict]], engine: str) -> None:
    # Every account granted to one person only, over the whole journal (before and after).
    holders: dict[str, set[str]] = defaultdict(set)
    reserved: set[str] = set()
    for r in consume_sync(bootstrap, [topics.JOURNAL], timeout=120):
        for _, entry in journal_entries(r.key, r.value):
            if type(entry) is AnswerEntry and entry.granted:
                if entry.claim_kind == "account":
                    holders[entry.claim_key].add(entry.person_id)
                else:
                    reserved.add(entry.person_id)
    assert holders, "the history should link payment accounts"
    shared = {k: v for k, v in holders.items() if len(v) > 1}
    assert not shared, shared
    # The budget count of the live claims table carried over the rescale: it counts every
    # reservation granted, the ones before it too.
    table = _claims_table(bootstrap, engine)
    count = int(table.get(BUDGET_COUNT_KEY) or b"0")
    rows = {k for k in table if k.startswith(RESERVED_PREFIX)}
    accepted = {p for p, outs in expected.items() for o in outs
                if o.get("kind") == "decision" and o.get("type") == "mykey.reserved"
                and o.get("accepted")}
    assert reserved and count == len(reserved) == len(rows) == len(accepted)
    budget = 40_000_000  # streams/data/demo.toml
    assert count <= budget


def _what_is_missing(bootstrap: str, wanted: set[str], expected: dict[str, list[dict]],
                     first: list[bytes], backlog: list[bytes]) -> str:
    """Which expected outcomes never came, by the phase their event was sent in, with the
    group's committed offsets next to each topic's end: where to look when the run fails."""
    from clients.connect import run_blocking
    from schemas.topics import partition_for_key

    seen = {msgspec.json.decode(r.value)["outcome_id"]
            for r in consume_sync(bootstrap, OUTCOME_TOPICS, timeout=120)}
    phase = {msgspec.json.decode(x)["event_id"]: "first half" for x in first}
    phase.update({msgspec.json.decode(x)["event_id"]: "backlog" for x in backlog})
    missing = [(p, o) for p, outs in expected.items() for o in outs
               if o["outcome_id"] in wanted - seen]
    by: dict[tuple[str, int], int] = defaultdict(int)
    for p, o in missing:
        by[(phase.get(o.get("event_id", ""), "rest"), partition_for_key(p.encode(), 8))] += 1

    async def offsets() -> str:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            committed = await admin.list_consumer_group_offsets(APP_ID)
            ends = await consumer.end_offsets(list(committed))
            return "; ".join(f"{tp.topic}/{tp.partition} committed {m.offset} end {ends[tp]}"
                             for tp, m in sorted(committed.items()) if m.offset != ends[tp])
        finally:
            await consumer.stop()
            await admin.close()

    person = missing[0][0] if missing else None
    published = [msgspec.json.decode(r.value) for r in consume_sync(
        bootstrap, OUTCOME_TOPICS, timeout=120)]
    theirs = [(o.get("event_id"), o["kind"], o.get("accepted"), o.get("reason"), o.get("code"),
               o.get("points")) for o in published if o.get("person_id") == person]
    journal = []
    for r in consume_sync(bootstrap, [topics.JOURNAL], timeout=120):
        for key, entry in journal_entries(r.key, r.value):
            if key != (person or "").encode():
                continue
            if type(entry) is AnswerEntry:
                journal.append((r.partition, r.offset, "answer", entry.claim_kind,
                                entry.event_id, entry.granted))
            else:
                ev = msgspec.json.decode(entry.value)
                journal.append((r.partition, r.offset, ev["type"], ev["event_id"],
                                f"{entry.topic}/{entry.partition}/{entry.offset}", entry.late))
    event_ids = {o.get("event_id") for _, o in missing}
    inputs = [f"{r.topic}/{r.partition}/{r.offset}"
              for r in consume_sync(bootstrap, list(topics.INPUT_TOPICS), timeout=120)
              if r.value and msgspec.json.decode(r.value).get("event_id") in event_ids]
    dead = [msgspec.json.decode(r.value)
            for r in consume_sync(bootstrap, [topics.DEADLETTER], timeout=120)]
    return (f"their events in the input topics at: {inputs or 'nowhere'}; dead letters: "
            f"{len(dead)} {dead[:3]}; "
            f"{len(missing)} expected outcomes never published; by (phase, partition at 8): "
            f"{dict(sorted(by.items()))}; first: {missing[:3]}; partitions whose committed "
            f"offset is not at the end: {run_blocking(offsets())}; {person}'s published "
            f"outcomes: {theirs}; {person}'s journal: {journal}; expected: "
            f"{[(o.get('event_id'), o['kind']) for o in expected.get(person or '', [])]}")


def _in_three(people: int, seed: int) -> tuple[list[bytes], tuple[list[bytes], ...]]:
    """A history, and its three slices: the first half (decided on 4 partitions), a tenth sent
    while no worker runs, the rest (decided after the rescale)."""
    lines = _sorted_history(people, seed=seed)
    n = len(lines)
    return lines, (lines[: n // 2], lines[n // 2 : n // 2 + n // 10], lines[n // 2 + n // 10 :])


def _decided_at_4(broker, tmp_path: Path, engine: str, first: list[bytes], *,
                  until: list[bytes] | None = None, extra_args: list[str] | None = None,
                  kill: bool = False) -> None:
    """`first` sent to a worker at 4 partitions, which is stopped (or SIGKILLed: `kill`) once
    every outcome of `until` (default: of `first`) is published."""
    _, _, wanted = _expect(first if until is None else until)
    logs = tmp_path / "logs"
    logs.mkdir()
    worker = WorkerProcess(broker, tmp_path / "data-4", logs, config=DEMO_CONFIG, engine=engine,
                           extra_args=extra_args).start()
    try:
        _produce(broker.bootstrap, first)
        Outcomes(broker.bootstrap).until_ids(wanted, 600, worker)
    finally:
        if kill:
            worker.kill()
        else:
            worker.stop()


def _decide_the_rest_at_8(broker, tmp_path: Path, engine: str, lines: list[bytes],
                          slices: tuple[list[bytes], ...], extra_args: list[str] | None = None
                          ) -> None:
    """After the rescale: a worker at 8 partitions on a fresh data dir, the last slice sent; every
    person as `simulate` decides the whole history, no account held twice, the budget count
    carried over."""
    bootstrap = broker.bootstrap
    first, backlog, rest = slices
    expected, contended, wanted = _expect(lines)
    logs_8 = tmp_path / "logs-8"  # the worker at 4 partitions logged to `logs`
    logs_8.mkdir()
    worker = WorkerProcess(broker, tmp_path / "data-8", logs_8, partitions=8,
                           config=DEMO_CONFIG, engine=engine, extra_args=extra_args).start()
    try:
        _produce(bootstrap, rest)
        try:
            published = Outcomes(bootstrap).until_ids(wanted, RESCALE_WAIT, worker)
        except AssertionError as exc:
            raise AssertionError(_what_is_missing(bootstrap, wanted, expected, first, backlog)
                                 ) from exc
        _assert_as_simulate(published, expected, contended)
    finally:
        worker.stop()
    _assert_claims_hold(bootstrap, expected, engine)


def _scenario(broker, tmp_path: Path, crash_at: str | None, engine: str) -> None:
    bootstrap = broker.bootstrap
    lines, (first, backlog, rest) = _in_three(PEOPLE, seed=41)
    _, _, wanted_first = _expect(first)
    logs = tmp_path / "logs"
    logs.mkdir()
    state = tmp_path / "rescale.state"
    worker = WorkerProcess(broker, tmp_path / "data-4", logs, config=DEMO_CONFIG,
                           engine=engine).start()
    try:
        _produce(bootstrap, first)
        Outcomes(bootstrap).until_ids(wanted_first, 600, worker)
        running = _rescale(bootstrap, tmp_path / "refused.state")
        assert running.returncode == 2 and "still running" in running.stderr, running.stderr
        assert not (tmp_path / "refused.state").exists()
    finally:
        worker.stop()
    # Sent before the growth; no worker will consume them at 4 partitions.
    _produce(bootstrap, backlog)

    smaller = _rescale(bootstrap, tmp_path / "refused.state", to=4)
    assert smaller.returncode == 2 and "larger than 4" in smaller.stderr, smaller.stderr
    other_rules = _rescale(bootstrap, tmp_path / "refused.state", config=None)
    assert other_rules.returncode == 2 and "decided under rules" in other_rules.stderr
    assert set(_partition_counts(bootstrap, engine).values()) == {4}

    if crash_at is not None:
        crashed = _rescale(bootstrap, state, env={CRASH_ENV: crash_at})
        assert crashed.returncode == 70, crashed.stderr
        assert f"stopping at {crash_at}" in crashed.stderr
    done = _rescale(bootstrap, state)
    assert done.returncode == 0, done.stderr
    assert "rescaled from 4 to 8 partitions" in done.stdout
    if crash_at is not None:
        assert "finishing" in done.stdout + done.stderr
    # Every record of the backlog moved, none twice (the crashed run sent half).
    moved = [(hv, r.value) for r in consume_sync(bootstrap, list(topics.INPUT_TOPICS),
                                                 timeout=120)
             for hk, hv in r.headers or () if hk == SOURCE_HEADER]
    assert len({source for source, _ in moved}) == len(moved)
    assert not Counter(backlog) - Counter(value for _, value in moved)
    if crash_at == "inputs:half":
        assert "moved by the earlier run" in done.stdout, done.stdout
    assert set(_partition_counts(bootstrap, engine).values()) == {8}
    again = _rescale(bootstrap, state)
    assert again.returncode == 2 and "already done" in again.stderr
    # The snapshot is a database beside the state file, which holds only the progress.
    assert (state.with_name(state.name + ".snapshot.db") / "CURRENT").is_file()

    _decide_the_rest_at_8(broker, tmp_path, engine, lines, (first, backlog, rest))

    # Replay of the rescaled topics: nothing differs; two halves add up to the whole.
    base = ["replay", "--bootstrap", bootstrap, "--config", DEMO_CONFIG, "--app-id", APP_ID,
            "--json"]
    whole = _cli(*base)
    assert whole.returncode == 0, whole.stdout[-3000:] + whole.stderr
    reports = []
    for i, spec in enumerate(("0-3", "4-7")):
        part = _cli(*base, "--partitions", spec)
        assert part.returncode == 0, part.stdout[-3000:] + part.stderr
        path = tmp_path / f"part{i}.json"
        path.write_text(part.stdout)
        reports.append(str(path))
    combined = _cli("replay", "--combine", *reports)
    assert combined.returncode == 0, combined.stderr
    got, want = json.loads(combined.stdout), json.loads(whole.stdout)
    for k in ("people", "journal_entries", "events", "claim_answers", "outcomes",
              "tables_compared"):
        assert got[k] == want[k], k
    assert got["partitions"]["complete"] is True
    assert want["people"] == len({msgspec.json.decode(x)["person_id"] for x in lines})


def test_rescale_4_to_8_decides_as_simulate(fresh_broker, tmp_path, worker_engine):
    _scenario(fresh_broker, tmp_path, crash_at=None, engine=worker_engine)


def test_rescale_crashed_half_way_then_run_again(fresh_broker, tmp_path, worker_engine):
    _scenario(fresh_broker, tmp_path, crash_at=f"rebuild:{topics.JOURNAL}:half",
              engine=worker_engine)


def test_rescale_crashed_while_moving_the_inputs_then_run_again(fresh_broker, tmp_path,
                                                                worker_engine):
    # Half of the backlog re-sent, then the process gone: the run after it sends only the rest.
    _scenario(fresh_broker, tmp_path, crash_at="inputs:half", engine=worker_engine)


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_rescale_after_a_worker_was_killed_in_the_middle_of_its_work(fresh_broker, tmp_path,
                                                                     worker_engine, guarantee):
    # SIGKILL while the worker decides the first half: its last sends, table writes and (in the
    # exactly-once mode) its open transaction are left as they were, its offsets behind them.
    # Once the group has let the dead member go, the rescale takes over from there; the worker
    # at 8 partitions then decides the rest, and every person ends as `simulate` decides the
    # whole history.
    bootstrap = fresh_broker.bootstrap
    lines, (first, backlog, rest) = _in_three(PEOPLE // 2, seed=53)
    mode = ["--processing-guarantee", guarantee]
    _decided_at_4(fresh_broker, tmp_path, worker_engine, first, until=first[: len(first) // 3],
                  extra_args=mode, kill=True)
    _produce(bootstrap, backlog)

    done: list[subprocess.CompletedProcess[str]] = []

    def rescaled() -> bool:
        # Refused while the broker still counts the killed worker in the group.
        run = _rescale(bootstrap, tmp_path / "rescale.state")
        if run.returncode == 2 and "still running" in run.stderr:
            return False
        done.append(run)
        return True

    wait_for(rescaled, 300, "the rescale, once the killed worker left the group")
    assert done[0].returncode == 0, done[0].stdout + done[0].stderr
    assert "rescaled from 4 to 8 partitions" in done[0].stdout

    _decide_the_rest_at_8(fresh_broker, tmp_path, worker_engine, lines, (first, backlog, rest),
                          extra_args=mode)


@pytest.mark.workers("faust")
def test_a_journal_partition_emptied_by_deletion_is_refused_before_anything_changes(
        fresh_broker, tmp_path, worker_engine):
    # A journal partition whose records were all deleted (retention, or DeleteRecords) holds no
    # record to show it: the broker's log start says so. The rescale refuses at its snapshot,
    # before it grows a topic or moves a record, and says the app can go on as it is.
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

    from clients.connect import run_blocking

    bootstrap = fresh_broker.bootstrap
    _decided_at_4(fresh_broker, tmp_path, worker_engine, _sorted_history(PEOPLE // 8, seed=47))
    journal = consume_sync(bootstrap, [topics.JOURNAL], timeout=120)
    end = 1 + max(r.offset for r in journal if r.partition == 0)

    async def delete() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.delete_records({TopicPartition(topics.JOURNAL, 0): RecordsToDelete(end)})
        finally:
            await admin.close()

    run_blocking(delete())
    assert not [r for r in consume_sync(bootstrap, [topics.JOURNAL], timeout=120)
                if r.partition == 0]
    refused = _rescale(bootstrap, tmp_path / "rescale.state")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"journal partition 0 starts at offset {end}" in refused.stderr, refused.stderr
    assert "Nothing was changed" in refused.stderr
    assert set(_partition_counts(bootstrap, worker_engine).values()) == {4}
    # Replay names the loss instead of differing for no visible reason.
    replayed = _cli("replay", "--bootstrap", bootstrap, "--config", DEMO_CONFIG, "--app-id",
                    APP_ID)
    assert replayed.returncode == 1, replayed.stdout[-3000:] + replayed.stderr
    assert f"the first {end:,} offsets of journal partition 0 were deleted" in replayed.stdout


def _add_partitions_by_hand(bootstrap: str, count: int) -> list[str]:
    """What an operator's `kafka-topics.sh --alter --partitions` does to every topic of the app:
    the partitions are added, nothing is moved."""
    from aiokafka.admin import AIOKafkaAdminClient, NewPartitions

    from clients.connect import run_blocking

    async def grow() -> list[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            names = sorted(t for t in await admin.list_topics()
                           if (t.startswith("mynapoint.") or APP_ID in t)
                           and "__assignor" not in t)
            await admin.create_partitions({t: NewPartitions(total_count=count) for t in names})
            return names
        finally:
            await admin.close()

    return run_blocking(grow())


def test_partitions_added_by_hand_are_refused_until_rescaled(fresh_broker, tmp_path,
                                                             worker_engine):
    # Partitions added with Kafka's own tool move nothing: a worker started on them would have
    # decided the moved people on an empty state (seen: a second phase-1 grant, a payment on an
    # unlinked account). It refuses, saying what to do; `mynapoint rescale` to a larger count
    # then puts everyone where the workers look, and the rest is decided as `simulate` decides
    # the whole history.
    bootstrap = fresh_broker.bootstrap
    lines, (first, backlog, rest) = _in_three(PEOPLE // 2, seed=43)
    expected, contended, wanted = _expect(lines)
    _decided_at_4(fresh_broker, tmp_path, worker_engine, first)

    grown = _add_partitions_by_hand(bootstrap, 8)
    assert topics.JOURNAL in grown and any("changelog" in t for t in grown), grown
    _produce(bootstrap, backlog)  # producers go on, over 8 partitions now
    said = refused_start(fresh_broker, tmp_path, partitions=8, config=DEMO_CONFIG,
                         engine=worker_engine)
    assert "not laid out for their partition counts" in said, said
    assert f"the last records of {topics.JOURNAL}" in said
    assert "mynapoint rescale --to-partitions M" in said

    done = _rescale(bootstrap, tmp_path / "rescale.state", to=16)
    assert done.returncode == 0, done.stderr
    assert "rescaled from 8 to 16 partitions" in done.stdout

    logs_16 = tmp_path / "logs-16"
    logs_16.mkdir()
    worker = WorkerProcess(fresh_broker, tmp_path / "data-16", logs_16, partitions=16,
                           config=DEMO_CONFIG, engine=worker_engine).start()
    try:
        _produce(bootstrap, rest)
        published = Outcomes(bootstrap).until_ids(wanted, RESCALE_WAIT, worker)
        _assert_as_simulate(published, expected, contended)
    finally:
        worker.stop()
    whole = _cli("replay", "--bootstrap", bootstrap, "--config", DEMO_CONFIG, "--app-id", APP_ID)
    assert whole.returncode == 0, whole.stdout[-3000:] + whole.stderr
