"""The Faust app's wiring (agents/app.py), without a broker."""

from __future__ import annotations

import asyncio
import logging

import pytest
from faust.types import TP

from schemas import topics
from streams.pipeline.intake import Intake
from streams.pipeline.ledger import Ledger
from streams.pipeline.rereads import Rereads


def test_a_revocation_reaches_each_step_with_its_own_partitions(tmp_path, monkeypatch):
    from agents.app import create_app
    from agents.settings import WorkerSettings

    heard: list[tuple[str, object]] = []
    monkeypatch.setattr(Intake, "revoked", lambda self, sources: heard.append(("intake", sources)))
    monkeypatch.setattr(Ledger, "revoked", lambda self, parts: heard.append(("ledger", parts)))
    # The ledger's and the claims' sources (intake's are its own step's).
    monkeypatch.setattr(Rereads, "revoked",
                        lambda self, sources: heard.append(("rereads", sources)))
    app = create_app(WorkerSettings(data_dir=str(tmp_path)))
    revoked = {TP(topics.CARDS, 1), TP(topics.PAYMENTS, 3), TP(topics.JOURNAL, 1),
               TP(topics.CLAIMS, 2)}
    asyncio.run(app.on_partitions_revoked.send(revoked))
    assert sorted(heard, key=str) == [
        ("intake", {(topics.CARDS, 1), (topics.PAYMENTS, 3)}),
        ("ledger", {1}),
        ("rereads", {(topics.CLAIMS, 2)}),
        ("rereads", {(topics.JOURNAL, 1)}),
    ]


def test_only_a_static_member_watches_for_being_fenced(tmp_path):
    from agents.app import StopWhenFenced, create_app
    from agents.settings import WorkerSettings

    def watches(**kwargs: object) -> list[StopWhenFenced]:
        app = create_app(WorkerSettings(data_dir=str(tmp_path), **kwargs))
        return [c for c in app._children if isinstance(c, StopWhenFenced)]  # noqa: SLF001

    assert watches() == []
    (watch,) = watches(instance_id="worker-1")
    assert "instance id 'worker-1'" in watch._message  # noqa: SLF001


def test_a_fenced_worker_crashes_its_app_with_what_to_do(app_holding):
    # `fenced` reads the error aiokafka's group coordinator holds (tests/agents/
    # test_faust_private.py); the service started with the app crashes it, and so stops the
    # worker, with the message.
    from aiokafka.errors import KafkaError

    from agents.app import FencedWorker, StopWhenFenced, fenced_message
    from agents.faust_private import name_fenced_instance_ids

    crashed: list[BaseException] = []

    async def crash(reason: BaseException) -> None:
        crashed.append(reason)

    app, coordinator = app_holding(crash=crash)

    async def run() -> None:
        watch = StopWhenFenced(app, fenced_message("mynapoint", "worker-1"))  # type: ignore[arg-type]
        await watch.start()
        await asyncio.sleep(0.05)
        assert crashed == []  # nothing held: it goes on
        coordinator._pending_exception = KafkaError(repr(name_fenced_instance_ids()()))
        while not crashed:
            await asyncio.sleep(0.05)
        await watch.stop()

    asyncio.run(run())
    (reason,) = crashed
    assert isinstance(reason, FencedWorker)
    assert str(reason).startswith("another worker joined group 'mynapoint' with this worker's "
                                  "instance id 'worker-1'")


@pytest.mark.parametrize(("reason", "says"), [
    ("fenced", True),    # a fetch raised the error the coordinator held: the app crashed on it
    ("other", False),    # any other crash
    (None, False),       # a plain stop
])
def test_a_worker_that_stopped_on_the_fencing_error_before_its_watch_looked_says_why(
        caplog, app_holding, reason, says):
    # The race seen once in CI: Faust's fetcher raised aiokafka's pending `FencedInstanceIdError`
    # and crashed the app before `StopWhenFenced` looked; the worker stopped without the message.
    from aiokafka.errors import KafkaError, UnknownError

    from agents.app import StopWhenFenced, fenced_message
    from agents.faust_private import name_fenced_instance_ids

    crash_reason = {"fenced": KafkaError(repr(name_fenced_instance_ids()())),
                    "other": KafkaError(repr(UnknownError())), None: None}[reason]
    app, _ = app_holding(crash_reason=crash_reason)  # nothing held: the fetch took it

    async def run() -> None:
        watch = StopWhenFenced(app, fenced_message("mynapoint", "worker-1"))  # type: ignore[arg-type]
        await watch.start()
        await watch.stop()
        await watch.stop()  # said once at most

    with caplog.at_level(logging.ERROR, logger="mynapoint"):
        asyncio.run(run())
    said = [r.getMessage() for r in caplog.records if "instance id 'worker-1'" in r.getMessage()]
    assert len(said) == (1 if says else 0), said
    if says:
        assert "FencedInstanceIdError" in said[0]


def test_the_worker_makes_every_topic_of_faust_beforehand(tmp_path):
    """The worker makes each topic Faust uses before the app starts, with Faust's names for
    them: the tables' changelogs and Faust's leader topic (one partition)."""
    from agents.app import create_app
    from agents.settings import WorkerSettings
    from clients.offline import engine_topics, worker_topics

    app = create_app(WorkerSettings(data_dir=str(tmp_path), app_id="some-app"))
    names, _ = worker_topics("faust", "some-app")
    assert {t.changelog_topic.get_topic_name() for t in app.tables.values()} <= set(names)
    # The leader topic, made with them (`clients.offline.ensure_worker_topics`).
    leader = app._leader_assignor._leader_topic  # noqa: SLF001
    assert engine_topics("faust", "some-app") == {leader.get_topic_name(): leader.partitions}
    assert engine_topics("quix", "some-app") == {}
