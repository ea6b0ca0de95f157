"""`read_topics` (clients/history.py) and a topic just made: each broker of a cluster applies a
topic's creation in its own time, so a worker's start-up check, which reads the topics it has
just made, asks the metadata again instead of calling them missing (`made`). Seen on three
Apache Kafka brokers: a worker stopped at start with "topic(s) [...] do not exist". A fake
consumer answers the metadata requests here."""

from __future__ import annotations

from typing import Any

import pytest

from clients import history as H
from clients.connect import run_blocking
from schemas import topics


class _Cluster:
    def __init__(self, names: set[str]):
        self.names = names

    def topics(self) -> set[str]:
        return self.names

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set()  # no partition: nothing to read after the metadata


class _Client:
    """Answers each metadata request with the next of `answers` (the last one for ever)."""

    def __init__(self, answers: list[set[str]]):
        self.answers = answers
        self.asked = 0

    async def fetch_all_metadata(self) -> _Cluster:
        self.asked += 1
        return _Cluster(self.answers[min(self.asked, len(self.answers)) - 1])


@pytest.fixture
def metadata(monkeypatch: pytest.MonkeyPatch):
    """Makes the consumer of `read_topics` see the given metadata answers; returns its client."""
    import aiokafka

    def answers(*seen: set[str]) -> _Client:
        client = _Client(list(seen))

        class Consumer:
            def __init__(self, **_kwargs: Any):
                self._client = client

            async def start(self) -> None:
                pass

            async def stop(self) -> None:
                pass

        monkeypatch.setattr(aiokafka, "AIOKafkaConsumer", Consumer)
        return client

    return answers


WANTED = [topics.JOURNAL, topics.CLAIMS]


def test_a_topic_just_made_is_asked_for_again_until_the_metadata_lists_it(metadata):
    client = metadata(set(), {topics.JOURNAL}, set(WANTED))
    dump = run_blocking(H.read_topics("b:9092", WANTED, made=True, timeout=60))
    assert client.asked == 3
    assert dump.partitions == dict.fromkeys(WANTED, 0) and dump.missing == []


def test_otherwise_a_missing_topic_is_said_at_once(metadata):
    client = metadata(set(), set(WANTED))
    with pytest.raises(H.HistoryError, match="do not exist"):
        run_blocking(H.read_topics("b:9092", WANTED, timeout=60))
    assert client.asked == 1


def test_a_topic_never_listed_is_still_missing_at_the_timeout(metadata):
    client = metadata({topics.JOURNAL})
    with pytest.raises(H.HistoryError, match=r"\['mynapoint.claims'\] do not exist"):
        run_blocking(H.read_topics("b:9092", WANTED, made=True, timeout=0.3))
    assert client.asked > 1


def test_a_broker_that_never_answers_is_said_so_not_with_empty_brackets(monkeypatch):
    # A firewalled address drops the connection attempts: the start times out, and a bare
    # TimeoutError has no text ("cannot reach a Kafka broker at ... ()" before).
    import asyncio

    import aiokafka

    class Consumer:
        def __init__(self, **_kwargs: Any):
            pass

        async def start(self) -> None:
            await asyncio.sleep(3600)

        async def stop(self) -> None:
            pass

    monkeypatch.setattr(aiokafka, "AIOKafkaConsumer", Consumer)
    with pytest.raises(H.HistoryError) as info:
        run_blocking(H.read_topics("10.255.255.1:9092", WANTED, timeout=0.1))
    said = str(info.value)
    assert "cannot reach a Kafka broker at 10.255.255.1:9092 (no answer in time" in said
    assert "()" not in said
