"""`clients.admin.any_broker`: an admin request whose broker does not answer is asked again, so
that a broker killed but still in the cluster's metadata (until the controllers miss its
heartbeats) neither fails nor misleads a worker that starts then. Seen on a three-broker Apache
Kafka cluster with one broker killed: the cluster's description went to the dead broker, and the
worker made its topics with one replica instead of three (tests/integration/test_cluster.py)."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    NodeNotReadyError,
    RequestTimedOutError,
    TopicAuthorizationFailedError,
)

from clients import admin
from clients.admin import any_broker

HANGS = "hangs"  # a try that never answers: the request went to a dead controller


class Ask:
    """Answers "answer" after the given failures, one per try."""

    def __init__(self, failures: list[object]) -> None:
        self.failures = list(failures)
        self.tries = 0

    async def __call__(self) -> str:
        self.tries += 1
        if self.failures:
            failure = self.failures.pop(0)
            if failure == HANGS:
                await asyncio.Event().wait()
            raise failure  # type: ignore[misc]
        return "answer"


@pytest.fixture(autouse=True)
def _short_tries(monkeypatch):
    monkeypatch.setattr(admin, "FIRST_TRY", 0.01)


@pytest.mark.parametrize("failures", [
    [],
    [NodeNotReadyError("node 2")],  # a dead broker picked at random, then a live one
    [NodeNotReadyError("node 2"), NodeNotReadyError("node 2")],
    [KafkaConnectionError("reset")],
    [RequestTimedOutError()],
    [HANGS],  # a dead controller: the try is cut short, the next one answers
    [HANGS, NodeNotReadyError("node 2"), HANGS],
], ids=["at-once", "dead-once", "dead-twice", "connection", "timed-out", "hangs", "mixed"])
def test_asked_again_until_a_broker_answers(failures):
    ask = Ask(failures)
    assert asyncio.run(any_broker(ask, time.monotonic() + 60)) == "answer"
    assert ask.tries == len(failures) + 1


@pytest.mark.parametrize("failure", [NodeNotReadyError("node 2"), HANGS])
def test_no_answer_by_the_deadline_is_a_timeout(failure):
    # What the callers report as no answer in time (a worker: "check --bootstrap ...").
    ask = Ask([failure] * 10_000)
    with pytest.raises(TimeoutError):
        asyncio.run(any_broker(ask, time.monotonic() + 0.3))
    assert ask.tries > 1


def test_an_answer_that_is_an_error_is_not_asked_again():
    # Not a broker that is gone: the cluster's own answer (an ACL here), for the caller to report.
    ask = Ask([TopicAuthorizationFailedError()])
    with pytest.raises(TopicAuthorizationFailedError):
        asyncio.run(any_broker(ask, time.monotonic() + 60))
    assert ask.tries == 1


class DeadFirst:
    """An admin client each of whose requests goes first to a broker that died."""

    def __init__(self) -> None:
        self.tries: dict[str, int] = {}

    def _try(self, name: str) -> None:
        self.tries[name] = self.tries.get(name, 0) + 1
        if self.tries[name] == 1:
            raise NodeNotReadyError("node 2")

    async def list_topics(self) -> list[str]:
        self._try("list_topics")
        return ["journal"]

    async def describe_topics(self, names: list[str]) -> list[dict]:
        self._try("describe_topics")
        return [{"topic": n, "error_code": 0, "partitions": [{}, {}]} for n in names]


def test_the_offline_commands_ask_again_too():
    from clients.offline import OfflineJob

    job = OfflineJob("b:1", "app", timeout=60)
    job.admin = DeadFirst()
    assert asyncio.run(job.ask(job.admin.list_topics)) == ["journal"]
    assert asyncio.run(job._partition_counts(["journal"])) == {"journal": 2}
    assert job.admin.tries == {"list_topics": 2, "describe_topics": 2}


def test_an_offline_command_that_no_broker_answers_says_what_to_do():
    from clients.offline import OfflineFailed, OfflineJob

    job = OfflineJob("b:1", "app", timeout=0.3)
    job.command = "mynapoint rescale"
    with pytest.raises(OfflineFailed, match="no broker of b:1 answered within 0.3 s: check that "
                                            "the cluster is up, then run mynapoint rescale again"):
        asyncio.run(job.ask(Ask([NodeNotReadyError("node 2")] * 10_000)))


def test_one_warning_instead_of_aiokafkas_errors(caplog):
    aiokafka = logging.getLogger("aiokafka")

    async def dead_then_live(ask: Ask) -> str:
        if not ask.failures:
            return await ask()
        aiokafka.error("Unable connect to node with id %s: %s", 2, "refused")  # as its client does
        return await ask()

    ask = Ask([NodeNotReadyError("node 2")] * 3)
    with caplog.at_level(logging.WARNING):
        answer = asyncio.run(any_broker(lambda: dead_then_live(ask), time.monotonic() + 60))
        assert answer == "answer"
        aiokafka.error("Unable connect to node with id %s: %s", 3, "refused")  # said outside
    said = [(r.name, r.getMessage()) for r in caplog.records]
    assert said == [
        ("clients.admin", "a broker did not answer (NodeNotReadyError: node 2): asking again, of "
                          "another one if need be (a broker that died stays in the cluster's "
                          "metadata for its broker.session.timeout.ms)"),
        ("aiokafka", "Unable connect to node with id 3: refused"),
    ]
