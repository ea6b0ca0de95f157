"""The series alerts take a rate or an increase of are exported at 0 before anything happens: a
labelled counter otherwise appears with its first increment, whose increase `rate()` and
`increase()` cannot see (ops/alerts.yml would miss the first shared account, a new dead-letter
reason's first burst, or late events)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from agents import metrics
from schemas import codec, topics
from streams.core.reasons import ALERT_ACCOUNT_SHARED
from streams.pipeline import metrics as counters

ROOT = Path(__file__).resolve().parents[2]


def samples(name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for family in REGISTRY.collect()
            for s in family.samples if s.name == name}


def test_alerted_counters_exist_for_every_known_label_value():
    assert counters.DEAD_LETTERS  # imported: the series are registered
    dead = {dict(k)["reason"] for k in samples("mynapoint_dead_letters_total")}
    assert dead >= set(codec.DEAD_LETTER_REASONS)
    late = {dict(k)["topic"] for k in samples("mynapoint_late_events_total")}
    assert late >= set(topics.INPUT_TOPICS)
    rereads = {dict(k)["topic"] for k in samples("mynapoint_rereads_total")}
    assert rereads >= set(topics.INPUT_TOPICS)
    intake = {dict(k)["topic"] for k in samples("mynapoint_records_in_total")}
    assert intake >= set(topics.INPUT_TOPICS)
    codes = {dict(k)["code"] for k in samples("mynapoint_alerts_total")}
    assert ALERT_ACCOUNT_SHARED in codes


def test_every_dead_letter_reason_in_the_code_is_listed():
    used: set[str] = set()
    for path in [*ROOT.glob("schemas/*.py"), *ROOT.glob("agents/*.py"), *ROOT.glob("clients/*.py")]:
        for name in re.findall(r"BadInput\(\s*([A-Z_]+)\b", path.read_text(encoding="utf-8")):
            used.add(getattr(codec, name))
        assert not re.search(r"BadInput\(\s*[\"']", path.read_text(encoding="utf-8")), (
            f"{path}: name the reason with a constant of schemas/codec.py")
    assert used and used <= set(codec.DEAD_LETTER_REASONS)


def _app(tmp_path):
    from agents.app import create_app
    from agents.settings import WorkerSettings

    return create_app(WorkerSettings(data_dir=str(tmp_path)))


def test_partition_ownership_follows_the_active_assignment(tmp_path, monkeypatch):
    from faust.types import TP

    app = _app(tmp_path)
    collector = metrics._Collector()
    collector.app = app
    actives = {TP(topics.JOURNAL, 2), TP(topics.JOURNAL, 0), TP(topics.CARDS, 0)}
    # Faust's assignor (made here, as the worker's start makes it), with an assignment.
    monkeypatch.setattr(app.assignor, "assigned_actives", lambda: set(actives))
    [owned] = [f for f in collector.collect() if f.name == "mynapoint_partition_owned"]
    assert {(s.labels["topic"], s.labels["partition"], s.value) for s in owned.samples} == {
        (topics.JOURNAL, "0", 1.0), (topics.JOURNAL, "2", 1.0), (topics.CARDS, "0", 1.0)}
    actives.clear()  # everything revoked
    [owned] = [f for f in collector.collect() if f.name == "mynapoint_partition_owned"]
    assert owned.samples == []


def test_faust_assignor_still_has_what_the_gauge_reads():
    from faust.assignor.partition_assignor import PartitionAssignor

    assert callable(PartitionAssignor.assigned_actives)


def test_a_scrape_while_the_worker_starts_makes_none_of_fausts_parts(tmp_path):
    # Faust makes its consumer (with the thread that runs aiokafka, bound to the event loop of
    # the thread that asks) and its assignor on first use. A scrape, from its own thread, that
    # came before the worker's start had made them made them there: the start then failed
    # ("attached to a different loop") and the worker hung, deciding nothing.
    import threading

    from agents.faust_private import created_assignor, created_consumer

    app = _app(tmp_path)
    collector = metrics._Collector()
    collector.app = app
    collector.tables.update(app.mynapoint_tables)
    families: dict[str, Any] = {}
    scrape = threading.Thread(
        target=lambda: families.update((f.name, f) for f in collector.collect()))
    scrape.start()
    scrape.join()
    assert {"mynapoint_consumer_lag", "mynapoint_partition_owned"} <= set(families)
    # The tables' RocksDB stores find their active partitions through the assignor: none yet.
    assert {(s.labels["table"], s.value) for s in families["mynapoint_table_keys"].samples} == {
        (name, 0.0) for name in app.mynapoint_tables}
    assert created_consumer(app) is None and created_assignor(app) is None
    # Once Faust has made them (its start does, on its own loop), the scrape reads them.
    consumer, assignor = app.consumer, app.assignor
    assert created_consumer(app) is consumer and created_assignor(app) is assignor


def test_each_assignment_faust_signals_is_counted(tmp_path):
    import asyncio

    from faust.types import TP

    app = _app(tmp_path)
    before = samples("mynapoint_partition_assignments_total")[()]
    # What Faust sends at the end of each rebalance (`App._on_partitions_assigned`), here twice:
    # the first join, then a rebalance that left this worker nothing.
    asyncio.run(app.on_partitions_assigned.send({TP(topics.JOURNAL, 0)}))
    asyncio.run(app.on_partitions_assigned.send(set()))
    assert samples("mynapoint_partition_assignments_total")[()] == before + 2
