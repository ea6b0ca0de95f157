"""Topic creation for the pipeline: idempotent, with aiokafka's admin client.

    created = ensure_topics("127.0.0.1:9092", partitions=4)             # blocking
    report = await ensure_topics_async(bootstrap, 4, topics.INPUT_TOPICS)  # from async code

Every topic of `schemas.topics` (inputs, outputs and the internal journal and claims) is created
unless it exists; existing topics are left as they are (a different partition count is reported,
never changed). SASL/TLS settings go through as keyword arguments of `AIOKafkaAdminClient`
(`security_protocol=`, `ssl_context=`, `sasl_mechanism=`, `sasl_plain_username=`, ...).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple, TypeVar

from clients.connect import failure_text
from schemas.topics import (
    CLAIMS,
    DEFAULT_PARTITIONS,
    HISTORY_CONFIG,
    INPUT_TOPICS,
    JOURNAL,
    OUTPUT_TOPICS,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

ALL_TOPICS: tuple[str, ...] = (*INPUT_TOPICS, *OUTPUT_TOPICS, JOURNAL, CLAIMS)

#: The settings `ensure_topics` makes these topics with unless its caller gives others: the
#: journal and the claims keep every record (`HISTORY_CONFIG`), whoever makes them (a worker,
#: `mynapoint dev`, a test), as a worker requires (`clients.offline.config_problem`).
DEFAULT_CONFIGS: dict[str, dict[str, str]] = {JOURNAL: dict(HISTORY_CONFIG),
                                              CLAIMS: dict(HISTORY_CONFIG)}

TOPIC_ALREADY_EXISTS = 36


class TopicError(RuntimeError):
    """A topic could not be created, or did not become usable in time."""


class CannotCreate(TopicError):
    """The broker refused to create a topic; `code` is its error code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


#: The broker's error for a replication factor it cannot hold (more than its brokers).
INVALID_REPLICATION_FACTOR = 38

#: The broker's errors for a client an ACL does not allow to create topics: TOPIC_ and
#: CLUSTER_AUTHORIZATION_FAILED.
NOT_AUTHORIZED = (29, 31)


def create_command(bootstrap: str, topic: Any) -> str:
    """The `kafka-topics.sh` line that makes `topic` (an aiokafka `NewTopic`) as the worker
    would."""
    configs = "".join(f" --config {k}={v}" for k, v in sorted(topic.topic_configs.items()))
    return (f"kafka-topics.sh --bootstrap-server {bootstrap} --create --topic {topic.name} "
            f"--partitions {topic.num_partitions} --replication-factor "
            f"{topic.replication_factor}{configs}")


class Refused(TopicError):
    """`ensure_topics` created nothing: its `refuse` check said why (the message)."""


@dataclass
class TopicsReport:
    """What `ensure_topics` did: topics it created, and the partition count of every topic."""

    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    partitions: dict[str, int] = field(default_factory=dict)
    mismatched: dict[str, int] = field(default_factory=dict)
    """Existing topics whose partition count differs from the one asked for."""
    replication_factor: int = 1
    """The replication factor topics are made with: the one asked for, else the cluster's."""


async def ensure_topics_async(
    bootstrap: str,
    partitions: int = DEFAULT_PARTITIONS,
    topics: Iterable[str] = ALL_TOPICS,
    *,
    replication_factor: int | None = None,
    configs: Mapping[str, Mapping[str, str]] | None = None,
    counts: Mapping[str, int] | None = None,
    follow: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    refuse: Callable[[set[str]], str | None] | None = None,
    **client_kwargs: Any,
) -> TopicsReport:
    """Creates the missing `topics` with `partitions` partitions (a topic in `counts` with its
    own; a topic in `follow` with the count of the topic it names there, as the broker has it or
    as this call makes it: `made_count`) and waits until every one of them has a leader for each
    partition. `configs` maps a topic name to its topic configs (default: `DEFAULT_CONFIGS`).

    `replication_factor`: of the topics it makes; None: the cluster's `default.replication.factor`
    (`cluster_replication_factor`). `refuse`, given the names of the topics present, may say why
    nothing must be created: then `Refused` is raised with that reason, and nothing was created."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaError

    if partitions < 1:
        raise ValueError("partitions must be at least 1")
    counts, follow = counts or {}, follow or {}
    wanted = list(dict.fromkeys(topics))
    report = TopicsReport()
    if not wanted:
        return report
    deadline = time.monotonic() + timeout
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=max(int(timeout * 1000), 1000),
        **client_kwargs,
    )
    try:
        try:
            await asyncio.wait_for(admin.start(), timeout)
        except (KafkaError, OSError) as exc:
            # aiokafka has logged why (refused, unknown host, failed authentication, ...).
            raise TopicError(f"cannot reach a Kafka broker at {bootstrap} "
                             f"({failure_text(exc)})") from None
        present = set(await any_broker(admin.list_topics, deadline))
        why = refuse(present) if refuse is not None else None
        if why:
            raise Refused(why)
        report.replication_factor = (
            replication_factor if replication_factor is not None
            else await cluster_replication_factor(admin, _left(deadline)))
        missing = [t for t in wanted if t not in present]
        # The counts of the sources that exist, of the topics that follow one and are missing.
        sources = sorted({follow[t] for t in missing if t in follow} & present)
        have = await _wait_usable(admin, sources, deadline) if sources else {}
        if missing:
            new = [
                NewTopic(
                    name,
                    made_count(name, partitions, counts, follow, have),
                    report.replication_factor,
                    topic_configs=dict({**DEFAULT_CONFIGS, **(configs or {})}.get(name, {})),
                )
                for name in missing
            ]
            response = await any_broker(
                lambda: admin.create_topics(new, timeout_ms=int(_left(deadline) * 1000)),
                deadline)
            refused: list[tuple[NewTopic, int]] = []
            by_name = {t.name: t for t in new}
            for name, code, message in topic_errors(response):
                if code == 0:
                    report.created.append(name)
                elif code in NOT_AUTHORIZED:
                    refused.append((by_name[name], code))
                elif code != TOPIC_ALREADY_EXISTS:  # created meanwhile by someone else: fine
                    raise CannotCreate(
                        f"cannot create topic {name} with {report.replication_factor} "
                        f"replica(s): error {code}: {message}", code)
            if refused:
                raise CannotCreate(
                    f"this client may not create topics on {bootstrap} (error {refused[0][1]}: "
                    f"not authorized), and {len(refused)} are missing. Have them made with:\n"
                    + "\n".join(f"  {create_command(bootstrap, t)}" for t, _ in refused),
                    refused[0][1])
        report.existing = [t for t in wanted if t not in report.created]
        report.partitions = await _wait_usable(admin, wanted, deadline)
    except TimeoutError:
        raise TopicError(f"the topics were not ready on {bootstrap} within {timeout:g} s") from None
    finally:
        await admin.close()
    for name in report.existing:
        if report.partitions.get(name) != made_count(name, partitions, counts, follow,
                                                     report.partitions):
            report.mismatched[name] = report.partitions.get(name, 0)
    if report.mismatched:
        log.warning(
            "existing topics have a partition count other than %d (left unchanged): %s",
            partitions,
            ", ".join(f"{t}={n}" for t, n in sorted(report.mismatched.items())),
        )
    return report


def made_count(name: str, partitions: int, counts: Mapping[str, int],
               follow: Mapping[str, str], have: Mapping[str, int]) -> int:
    """The partition count `ensure_topics` makes topic `name` with: its own in `counts`, else
    `partitions`; or, for a topic in `follow`, the count of the topic it follows: the broker's
    (`have`) when that one exists, else the count it is made with."""
    source = follow.get(name)
    if source is None:
        return counts.get(name, partitions)
    return have.get(source) or counts.get(source, partitions)


def ensure_topics(
    bootstrap: str,
    partitions: int = DEFAULT_PARTITIONS,
    topics: Iterable[str] = ALL_TOPICS,
    **kwargs: Any,
) -> TopicsReport:
    """Blocking form of `ensure_topics_async` (same arguments); also safe to call from a thread
    that runs an event loop (it then runs in a helper thread)."""
    from clients.connect import run_blocking

    return run_blocking(ensure_topics_async(bootstrap, partitions, tuple(topics), **kwargs))


async def topic_names_async(bootstrap: str, *, timeout: float = 30.0,
                            **client_kwargs: Any) -> set[str]:
    """The names of the topics on `bootstrap`."""
    from aiokafka.admin import AIOKafkaAdminClient

    deadline = time.monotonic() + timeout
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap,
                                request_timeout_ms=max(int(timeout * 1000), 1000), **client_kwargs)
    try:
        await asyncio.wait_for(admin.start(), timeout)
        return set(await any_broker(admin.list_topics, deadline))
    except TimeoutError:
        raise TopicError(f"no answer from {bootstrap} within {timeout:g} s") from None
    finally:
        await admin.close()


def topic_names(bootstrap: str, **kwargs: Any) -> set[str]:
    """Blocking form of `topic_names_async` (same arguments)."""
    from clients.connect import run_blocking

    return run_blocking(topic_names_async(bootstrap, **kwargs))


#: The replication factor used where the cluster does not say its default and has this many
#: brokers or more (Kafka's usual production setting).
FALLBACK_REPLICATION = 3


async def cluster_replication_factor(admin: Any, timeout: float) -> int:
    """The cluster's `default.replication.factor` (what it gives topics it makes itself), as the
    first of its brokers that answers reports it (a broker that is down is passed over: asking
    only the first one gave a single replica whenever it was the one down). When none says it
    (Tansu; or the client may not describe the cluster's configs, an ACL; or none answers):
    `FALLBACK_REPLICATION`, or its broker count if smaller, with a warning where that is more
    than one; 1 when the cluster itself cannot be described in `timeout` s."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
    from aiokafka.errors import KafkaError

    deadline = time.monotonic() + timeout

    async def default_of(node: Any) -> int | None:
        for response in await admin.describe_configs(
                [ConfigResource(ConfigResourceType.BROKER, str(node))]):
            for res in response.resources:
                for entry in res[4]:
                    if entry[0] == "default.replication.factor" and entry[1]:
                        return max(int(entry[1]), 1)
        return None

    try:
        cluster = await any_broker(admin.describe_cluster, deadline)
        brokers = [b["node_id"] for b in cluster["brokers"]]
    except (TimeoutError, KafkaError, LookupError, TypeError):
        return 1
    for i, node in enumerate(brokers):
        try:
            # Each broker gets its share of what is left, so that one that does not answer
            # leaves time to ask the others.
            factor = await asyncio.wait_for(default_of(node),
                                            max(_left(deadline), 0.1) / (len(brokers) - i))
        except (TimeoutError, KafkaError, LookupError, TypeError, ValueError):
            continue
        if factor is not None:
            return factor
        break  # it answered, without the setting: the others would say the same
    factor = min(FALLBACK_REPLICATION, len(brokers))
    if factor > 1:
        log.warning("the cluster did not say its default.replication.factor (may this client "
                    "describe its configs? are its brokers up?): topics are made with %d "
                    "replicas; set --replication-factor to choose", factor)
    return max(factor, 1)


#: DescribeConfigs' `config_source` of a setting made on the topic itself (not a default).
DYNAMIC_TOPIC_CONFIG = 1


#: The error code of a topic the broker does not know (UNKNOWN_TOPIC_OR_PARTITION).
UNKNOWN_TOPIC = 3


def error_code(why: str | None) -> int | None:
    """The code of an error of `TopicConfigs.errors` ("error 29: ..."), or None for None."""
    if why is None:
        return None
    return int(why.split(":", 1)[0].removeprefix("error "))


class TopicConfigs(NamedTuple):
    """What one DescribeConfigs request tells of some topics."""

    #: topic -> setting -> value, of each topic the broker described
    settings: dict[str, dict[str, str]]
    #: topic -> why the broker did not describe it ("error 29: ..."; an ACL, typically)
    errors: dict[str, str]


async def describe_topic_configs(admin: Any, names: Iterable[str], *,
                                 own_only: bool = False) -> TopicConfigs:
    """The settings of the topics `names` (which must exist), in one DescribeConfigs request
    through `admin` (a started `AIOKafkaAdminClient`): those in effect (the topic's own, else
    the broker's defaults) as the broker reports them, or with `own_only` only those set on the
    topic itself. A broker may leave some out (Tansu reports only those a topic was created
    with)."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    wanted = list(dict.fromkeys(names))
    out = TopicConfigs({}, {})
    if not wanted:
        return out
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, n) for n in wanted])
    for response in responses:
        # Each entry is (name, value, read_only, config_source, ...) from version 1 on;
        # version 0 has is_default where the source is.
        own = (_is_own if response.API_VERSION >= 1 else _is_own_v0) if own_only else None
        for res in response.resources:
            # (error_code, error_message, resource_type, resource_name, config entries)
            code, message, name = res[0], res[1], res[3]
            if code:
                out.errors[name] = f"error {code}" + (f": {message}" if message else "")
                continue
            out.settings[name] = {e[0]: e[1] for e in res[4]
                                  if e[1] is not None and (own is None or own(e))}
    return out


def _is_own(entry: Any) -> bool:
    return bool(entry[3] == DYNAMIC_TOPIC_CONFIG)


def _is_own_v0(entry: Any) -> bool:
    return not entry[3]


async def topic_configs_async(bootstrap: str, names: Iterable[str], *, made: bool = False,
                              timeout: float = 30.0, **client_kwargs: Any) -> TopicConfigs:
    """The settings in effect of each of `names` that exists (`describe_topic_configs`).

    `made`: the topics were just made or found (`ensure_topics`). Each broker of a cluster
    applies a topic's creation in its own time, and these requests go to a broker picked at
    random: one that has not applied it yet leaves the topic out of its list, or answers
    "unknown topic" (error 3) for its settings. So one of `names` that is left out or unknown
    is asked for again, until the timeout; then it is left out, or its error reported, as
    without `made`."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    wanted = list(dict.fromkeys(names))
    deadline = time.monotonic() + timeout
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap,
                                request_timeout_ms=max(int(timeout * 1000), 1000), **client_kwargs)
    try:
        await asyncio.wait_for(admin.start(), timeout)
        found: TopicConfigs | None = None
        while True:
            try:
                present = set(await any_broker(admin.list_topics, deadline))
                listed = [n for n in wanted if n in present]
                found = await any_broker(partial(describe_topic_configs, admin, listed), deadline)
            except TimeoutError:
                if found is None:
                    raise
                return found  # asked again until the deadline: the last answer stands
            unknown = [n for n in wanted
                       if n not in present or error_code(found.errors.get(n)) == UNKNOWN_TOPIC]
            if not (made and unknown) or time.monotonic() >= deadline:
                return found
            await asyncio.sleep(min(0.1, _left(deadline)))
    except TimeoutError:
        raise TopicError(f"no answer from {bootstrap} within {timeout:g} s") from None
    except (KafkaError, OSError) as exc:
        raise TopicError(f"cannot read the topics' settings on {bootstrap} "
                         f"({failure_text(exc)})") from None
    finally:
        await admin.close()


def topic_configs(bootstrap: str, names: Iterable[str], **kwargs: Any) -> TopicConfigs:
    """Blocking form of `topic_configs_async` (same arguments)."""
    from clients.connect import run_blocking

    return run_blocking(topic_configs_async(bootstrap, names, **kwargs))


def _left(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.001)


#: The time the first try of `any_broker` is given; each next one gets twice its predecessor's.
#: Long enough that a live broker's answer is not cut short, even on a loaded machine: a
#: creation cut short and asked again reports its topics as existing, not made.
FIRST_TRY = 4.0


async def any_broker(ask: Callable[[], Awaitable[T]], deadline: float) -> T:
    """`ask()`, a request of an `AIOKafkaAdminClient`, asked again until it is answered or the
    monotonic `deadline` passes, when the broker it went to does not answer.

    Such a request goes to a broker the client picks at random among those of the cluster's
    metadata, or to the one the metadata names as the controller. A broker that died stays in
    that metadata until the controllers have missed its heartbeats for
    `broker.session.timeout.ms`: asking it fails (`NodeNotReadyError`, at once where its host
    refuses connections), or, as the controller, holds the request for the client's whole request
    timeout. Asked again, the client picks another broker, and its metadata, refreshed after the
    failed connection, may name another controller.

    A try is cut short after `FIRST_TRY` s, the next after twice that, and so on (never past the
    deadline): a live broker answers these requests well within the first (a request to a dead
    controller costs that much), and a slow cluster still gets tries as long as it needs. Asking
    again is safe for these requests (a topic that a cut-short try did make is then reported as
    existing). Unanswered by the deadline, it raises `TimeoutError` (from the last try's
    error), which its callers report as no answer in time; an answer that is an error is raised
    as it is.

    The first try that goes unanswered is logged, once, as a warning. aiokafka's "Unable
    connect" errors of the tries themselves are not (`clients.connect.quiet_connect_errors`): a
    dead controller alone gave ten a second. Its client's metadata refreshes, which run apart,
    still log theirs, naming the dead broker."""
    from aiokafka.errors import KafkaConnectionError, NodeNotReadyError, RequestTimedOutError

    from clients.connect import quiet_connect_errors

    allowed = FIRST_TRY
    said = False
    with quiet_connect_errors():
        while True:
            try:
                return await asyncio.wait_for(ask(), min(_left(deadline), allowed))
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise
                why = f"no answer within {allowed:g} s"
            except (NodeNotReadyError, KafkaConnectionError, RequestTimedOutError) as exc:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"no broker answered ({exc!r})") from exc
                why = str(exc)
            if not said:
                log.warning("a broker did not answer (%s): asking again, of another one if "
                            "need be (a broker that died stays in the cluster's metadata for "
                            "its broker.session.timeout.ms)", why)
                said = True
            allowed *= 2
            await asyncio.sleep(min(0.1, _left(deadline)))


def topic_errors(response: Any) -> list[tuple[str, int, str | None]]:
    out = []
    for entry in response.topic_errors:
        name, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None
        out.append((name, int(code), message))
    return out


async def _wait_usable(admin: Any, wanted: list[str], deadline: float) -> dict[str, int]:
    """Polls metadata until each topic exists and every partition has a leader."""
    while True:
        described = await any_broker(lambda: admin.describe_topics(wanted), deadline)
        counts: dict[str, int] = {}
        ready = True
        for topic in described:
            name = topic["topic"]
            parts = topic.get("partitions") or []
            if topic.get("error_code", 0) != 0 or not parts:
                ready = False
                continue
            if any(p.get("leader", -1) < 0 for p in parts):
                ready = False
            counts[name] = len(parts)
        if ready and all(name in counts for name in wanted):
            return counts
        if time.monotonic() >= deadline:
            raise TimeoutError
        # Topic creation propagates asynchronously on Apache Kafka: ask again shortly.
        await asyncio.sleep(min(0.1, _left(deadline)))


async def group_members(admin: Any, group: str) -> list[tuple[str, str]]:
    """The members of consumer group `group` as (member_id, client_id), through a started
    `AIOKafkaAdminClient` (Tansu reports member ids only: client_id is then "")."""
    members: list[tuple[str, str]] = []
    for response in await admin.describe_consumer_groups([group]):
        for described in response.groups:
            for member in described[5]:
                members.append((str(member[0]), str(member[1] or "")))
    return members
