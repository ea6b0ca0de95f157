"""The topics a worker makes before its engine starts, and two workers started at once on a fresh
cluster with many partitions (what an SRE does when scaling by partitions).

Seen on Apache Kafka with 32 partitions: of two Quix workers started together, one stopped with
Quix's `TopicNotFoundError` for its state's changelog. Quix made that topic at start-up; the
other worker's creation found it made, then looked it up before its broker's metadata showed it.
The worker now makes the changelogs itself beforehand, as Quix makes them
(`clients.offline.worker_topics`), as the Faust worker already made its tables'.

The race is timing's: with the changelogs left to Quix, the many-partitions test below failed 2
times in 4 on this machine (`TopicNotFoundError` in a worker's log), and passed 4 times in 4 with
them made beforehand; the first test checks the mechanism itself.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from clients.admin import (
    ALL_TOPICS,
    TopicConfigs,
    describe_topic_configs,
    ensure_topics,
    topic_names,
)
from clients.connect import run_blocking
from clients.produce import produce_lines
from schemas import topics
from streams.core.config import load_config
from streams.pipeline.settings import WorkerSettings
from tests.integration.test_kafka import _assert_as_simulate, _expect, _sorted_history
from tests.integration.test_pipeline import DEMO_CONFIG, Outcomes
from tests.integration.workers import WorkerProcess, refused_start, wait_for, worker_group

WIDE = 32


async def _describe(bootstrap: str, names: list[str]) -> dict[str, tuple[int, dict[str, str]]]:
    """Each topic's partition count, and the settings the broker reports for it."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        counts = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(names)}
        found = await describe_topic_configs(admin, names)
        assert found.errors == {}
        return {name: (counts[name], found.settings[name]) for name in names}
    finally:
        await admin.close()


def _settings(bootstrap: str, app_id: str, data_dir: Any) -> WorkerSettings:
    return WorkerSettings(bootstrap=bootstrap, app_id=app_id, data_dir=str(data_dir),
                          engine="quix")


@pytest.mark.engines("tansu")
def test_the_quix_worker_makes_its_state_changelogs_as_quix_makes_them(fresh_broker, tmp_path):
    from clients.offline import ensure_worker_topics, worker_topics
    from quix_worker.app import create_app

    bootstrap = fresh_broker.bootstrap
    # A journal of 6 partitions made beforehand; the worker's step makes the rest with 4, and
    # each changelog follows its source: the journal's 6, the claims' 4.
    ensure_topics(bootstrap, 6, [topics.JOURNAL])
    names, _ = worker_topics("quix", "by-worker")
    report = ensure_worker_topics("quix", "by-worker", bootstrap, 4)
    sources = (topics.JOURNAL, topics.CLAIMS)
    made = [topics.quix_changelog_topic("by-worker", s) for s in sources]
    assert set(made) <= set(report.created) and set(made) <= set(names)
    assert report.mismatched == {topics.JOURNAL: 6}  # the journal, not its changelog
    rules = load_config(None)
    # What Quix makes by itself, for another app.
    create_app(_settings(bootstrap, "by-quix", tmp_path / "q"), rules, journal_partitions=6)
    ours = run_blocking(_describe(bootstrap, made))
    quix = run_blocking(_describe(bootstrap, [topics.quix_changelog_topic("by-quix", s)
                                              for s in sources]))
    assert [n for n, _ in ours.values()] == [6, 4]
    assert list(ours.values()) == list(quix.values())
    assert all(c["cleanup.policy"] == "compact" for _, c in ours.values())
    # Quix takes the worker's changelogs as they are (it checks their partition counts).
    create_app(_settings(bootstrap, "by-worker", tmp_path / "w"), rules, journal_partitions=6)


@pytest.mark.engines("kafka")  # Tansu reports a topic's own settings as defaults (source 5)
def test_a_topics_own_settings_and_those_in_effect(broker):
    """What `rescale` keeps of a topic it makes again (the settings made on it) and what a
    worker checks (those in effect), each read from the broker in one request."""
    from aiokafka.admin import AIOKafkaAdminClient

    name = f"settings-{uuid.uuid4().hex[:8]}"
    own = {"cleanup.policy": "compact", "max.message.bytes": "2000000"}
    ensure_topics(broker.bootstrap, 1, [name], configs={name: own})

    async def read() -> tuple[TopicConfigs, TopicConfigs]:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            return (await describe_topic_configs(admin, [name], own_only=True),
                    await describe_topic_configs(admin, [name]))
        finally:
            await admin.close()

    made, in_effect = run_blocking(read())
    assert made == TopicConfigs({name: own}, {})
    assert in_effect.errors == {}
    assert in_effect.settings[name].items() >= own.items()


@pytest.mark.engines("kafka")
def test_two_workers_started_at_once_on_many_partitions_decide_as_simulate(
        fresh_broker, tmp_path, worker_engine):
    lines = _sorted_history(1000, seed=81)
    expected, contended, wanted = _expect(lines)
    with worker_group(fresh_broker, tmp_path, 2, config=DEMO_CONFIG, engine=worker_engine,
                      partitions=WIDE) as workers:
        report = run_blocking(produce_lines(lines, fresh_broker.bootstrap, partitions=WIDE,
                                            timeout=300))
        assert not report.bad
        published = Outcomes(fresh_broker.bootstrap).until_ids(wanted, 900, workers[0], expected)
        for worker in workers:
            worker.assert_alive()
        _assert_as_simulate(published, expected, contended)
    assert len({o["person_id"] for o in published}) == len(expected)


def _set_configs(bootstrap: str, configs: dict[str, dict[str, str]]) -> None:
    """What the refusal's `kafka-configs.sh --alter --add-config` lines do."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    async def alter() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, t, configs=c)
                                       for t, c in configs.items()])
        finally:
            await admin.close()

    run_blocking(alter())


@pytest.mark.engines("kafka")
def test_a_worker_refuses_topics_that_would_lose_history_or_state(fresh_broker, tmp_path,
                                                                  worker_engine):
    # Topics an operator's tooling made with the cluster's defaults: a journal deleted after 7
    # days, a state changelog deleted by age rather than compacted. The worker refuses them,
    # saying which settings and the commands that set them; set so, it starts and decides.
    from clients.offline import state_sources

    bootstrap, app_id = fresh_broker.bootstrap, "mynapoint-settings"
    changelog = next(c for c, source in state_sources(worker_engine, app_id).items()
                     if source == topics.JOURNAL)
    ensure_topics(bootstrap, 4, [topics.JOURNAL, changelog],  # the journal with no settings
                  configs={topics.JOURNAL: {}, changelog: {"cleanup.policy": "delete"}})
    said = refused_start(fresh_broker, tmp_path, config=DEMO_CONFIG, app_id=app_id,
                         engine=worker_engine)
    assert "topic settings that would lose the app's history or state" in said, said
    assert f"{topics.JOURNAL} has retention.ms=" in said and "(needs -1" in said, said
    assert f"{changelog} has cleanup.policy=delete (needs compact" in said, said
    assert (f"--entity-name {changelog} --add-config cleanup.policy=compact") in said, said

    _set_configs(bootstrap, {topics.JOURNAL: dict(topics.HISTORY_CONFIG),
                             changelog: {"cleanup.policy": "compact"}})
    lines = _sorted_history(150, seed=53)
    expected, contended, wanted = _expect(lines)
    logs = tmp_path / "logs"
    logs.mkdir()
    worker = WorkerProcess(fresh_broker, tmp_path / "data", logs, config=DEMO_CONFIG,
                           app_id=app_id, engine=worker_engine).start()
    try:
        run_blocking(produce_lines(lines, bootstrap, timeout=120))
        published = Outcomes(bootstrap).until_ids(wanted, 600, worker)
        _assert_as_simulate(published, expected, contended)
    finally:
        worker.stop()


@pytest.mark.engines("kafka")
def test_the_worker_makes_topics_with_the_clusters_replication_factor_or_the_one_asked(
        make_test_broker, tmp_path, worker_engine):
    # On a production cluster every topic must be replicated; the worker made them all with one
    # replica. Now it takes the cluster's default.replication.factor, or --replication-factor.
    # A single broker whose default is 2 shows both: the default is refused (one broker cannot
    # hold two replicas), saying what to set; 1 asked for is made, and the worker decides.
    with make_test_broker(extra_config={"default.replication.factor": "2"}) as broker:
        app_id = "mynapoint-replicas"
        said = refused_start(broker, tmp_path, config=DEMO_CONFIG, app_id=app_id,
                             engine=worker_engine)
        assert "with 2 replica(s): error 38" in said, said
        assert "set --replication-factor (MYNAPOINT_REPLICATION_FACTOR)" in said, said

        lines = _sorted_history(60, seed=59)
        expected, contended, wanted = _expect(lines)
        logs = tmp_path / "logs"
        logs.mkdir()
        worker = WorkerProcess(broker, tmp_path / "data", logs, config=DEMO_CONFIG,
                               app_id=app_id, engine=worker_engine,
                               extra_args=["--replication-factor", "1"]).start()
        try:
            # The worker makes the input topics (with one replica); `produce` would make any
            # missing one with the cluster's two, which this broker refuses.
            wait_for(lambda: set(ALL_TOPICS) <= topic_names(broker.bootstrap), 120,
                     "the worker's topics", worker=worker)
            run_blocking(produce_lines(lines, broker.bootstrap, timeout=120))
            published = Outcomes(broker.bootstrap).until_ids(wanted, 600, worker)
            _assert_as_simulate(published, expected, contended)
        finally:
            worker.stop()
