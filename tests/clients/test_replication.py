"""The replication factor of the topics a worker makes (`clients.admin.cluster_replication_factor`):
the cluster's default.replication.factor, as a broker reports it; where it reports none (Tansu, or
a client an ACL keeps from the cluster's configs), 3 or the broker count if smaller, never
silently one replica on a cluster of several brokers."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import pytest
from aiokafka.errors import KafkaConnectionError, NodeNotReadyError

from clients.admin import cluster_replication_factor


class Admin:
    """The two calls it makes, answered as a broker would."""

    def __init__(self, brokers: int, default: str | None, fail: bool = False,
                 down: frozenset[int] = frozenset(), unanswered: int = 0) -> None:
        self.brokers, self.default, self.fail, self.down = brokers, default, fail, down
        self.unanswered = unanswered  # descriptions of the cluster sent to a dead broker
        self.asked: list[str] = []

    async def describe_cluster(self):
        if self.fail or self.unanswered:
            self.unanswered -= 1
            raise NodeNotReadyError("gone")
        return {"brokers": [{"node_id": i + 1} for i in range(self.brokers)]}

    async def describe_configs(self, resources):
        (resource,) = resources
        self.asked.append(resource.name)
        if int(resource.name) in self.down:  # a broker's configs are asked of that broker
            raise KafkaConnectionError(f"node {resource.name} is down")
        entries = [] if self.default is None else [
            ("default.replication.factor", self.default, False, 5, False, [])]
        # (error_code, error_message, resource_type, resource_name, entries)
        return [SimpleNamespace(resources=[(0, None, 4, "1", entries)])]


@pytest.mark.parametrize(("brokers", "default", "factor", "warned"), [
    (3, "3", 3, False),   # what the cluster says
    (1, "1", 1, False),
    (5, "2", 2, False),
    (5, None, 3, True),   # says nothing on five brokers: three, and a warning
    (2, None, 2, True),
    (1, None, 1, False),  # a single broker (Tansu): one, quietly
])
def test_the_clusters_default_or_a_safe_one(caplog, brokers, default, factor, warned):
    caplog.set_level(logging.WARNING, logger="clients.admin")
    assert asyncio.run(cluster_replication_factor(Admin(brokers, default), 5.0)) == factor
    assert bool(caplog.records) is warned


def test_no_answer_is_one():
    assert asyncio.run(cluster_replication_factor(Admin(3, "3", fail=True), 0.5)) == 1


def test_a_description_sent_to_a_dead_broker_is_asked_again():
    # The client sends it to a broker of its metadata at random. Before, one sent to a broker
    # killed but still listed gave 1, and the worker made its topics with one replica, silently.
    assert asyncio.run(cluster_replication_factor(Admin(3, "3", unanswered=2), 30.0)) == 3


@pytest.mark.parametrize(("down", "factor", "asked", "warned"), [
    (frozenset({1}), 3, ["1", "2"], False),        # the first broker down: the next one says
    (frozenset({1, 2}), 3, ["1", "2", "3"], False),
    (frozenset({1, 2, 3}), 3, ["1", "2", "3"], True),  # none answers: three, and a warning
])
def test_a_broker_that_is_down_is_passed_over(caplog, down, factor, asked, warned):
    # Before, only the first broker was asked: with it down (one broker of a three-broker
    # cluster, seen on Apache Kafka), the worker made its topics with one replica, silently.
    caplog.set_level(logging.WARNING, logger="clients.admin")
    admin = Admin(3, "3", down=down)
    assert asyncio.run(cluster_replication_factor(admin, 5.0)) == factor
    assert admin.asked == asked
    assert bool(caplog.records) is warned
