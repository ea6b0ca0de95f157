"""What the offline commands over an app's topics share (`mynapoint rescale`, `mynapoint
takeover`): they run while every worker of the app is stopped, and read, recreate and write its
topics through aiokafka's admin client and producer.

    job = SomeJob(bootstrap, app_id, timeout=300.0, **client_kwargs)   # an OfflineJob subclass
    await job.connect()        # raises job.failure with what to do when no broker answers
    try: ... finally: await job.close()
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Collection, Generator, Iterable, Mapping
from typing import Any, TypeVar

from clients.admin import (
    ALL_TOPICS,
    DEFAULT_CONFIGS,
    INVALID_REPLICATION_FACTOR,
    NOT_AUTHORIZED,
    TOPIC_ALREADY_EXISTS,
    CannotCreate,
    Refused,
    TopicError,
    TopicsReport,
    any_broker,
    describe_topic_configs,
    ensure_topics,
    topic_errors,
)
from clients.history import HistoryError, read_topics
from schemas import topics
from schemas.settings import ENGINES, ENV
from streams.audit.rescale import Header, latest_values
from streams.audit.takeover import (
    QUIX_COLUMN_FAMILY,
    QUIX_COLUMN_FAMILY_HEADER,
    QUIX_STATE_OF_TABLE,
    QUIX_STATE_SOURCES,
    tables_of,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# The size of the batches the offline commands send (the producer's default is 16 KiB).
_SEND_BATCH_BYTES = 1 << 20
# A record to send: topic, partition, key, value, headers.
Outgoing = tuple[str, int, bytes | None, bytes | None, list[Header]]


def state_topics(engine: str, app_id: str) -> dict[str, str]:
    """The changelog topics `engine`'s workers keep the state in: Faust's per table, Quix's per
    stateful dataframe's source topic."""
    if engine == "faust":
        return {t: topics.changelog_topic(app_id, t) for t in QUIX_STATE_OF_TABLE}
    return {s: topics.quix_changelog_topic(app_id, s) for s in QUIX_STATE_SOURCES}


def tables_in(engine: str, name: str) -> list[str]:
    """The Faust tables whose rows the state `name` of `engine` holds (`state_topics`' names):
    a Faust table its own; a Quix source topic's state those of every table kept there."""
    return [name] if engine == "faust" else tables_of(name)


def outgoing(topic: str, rows: Iterable[tuple[int, bytes | None, bytes | None]]
             ) -> Generator[Outgoing, None, None]:
    """The rows (partition, key, value) of the state changelog or internal topic `topic` as
    records to send, with the headers its rows carry (`state_headers`)."""
    headers = state_headers(topic)
    return ((topic, q, key, value, headers) for q, key, value in rows)


def state_elsewhere(engine: str, app_id: str, present: Collection[str]) -> str | None:
    """Why a worker of `engine` must not start for `app_id`, given the topics `present`: none of
    its engine's state changelogs is there, and another engine's are (the state was taken over,
    or the app ran only on the other engine), so it would decide on an empty state and its
    changelogs would then stand beside the real ones. None when it may start."""
    if any(t in present for t in state_topics(engine, app_id).values()):
        return None
    for other in ENGINES:
        found = sorted(t for t in state_topics(other, app_id).values() if t in present)
        if other != engine and found:
            return (
                f"the state of app {app_id!r} is in the {other} workers' changelogs "
                f"({', '.join(found)}), not in the {engine} workers': start the workers with "
                f"--engine {other}, or stop them all and run `mynapoint takeover --to {engine}` "
                "first (docs/RUNBOOK.md, \"Changing the engine\")")
    return None


def engine_topics(engine: str, app_id: str) -> dict[str, int]:
    """The topics `engine` itself uses besides the app's, with their partition counts: Faust's
    leader topic (one partition). The worker makes them, as every other topic, with the
    replication factor and the client settings of the others; and where it may not create
    topics, it names them with the others."""
    return {topics.faust_leader_topic(app_id): 1} if engine == "faust" else {}


def worker_topics(engine: str, app_id: str) -> tuple[tuple[str, ...], dict[str, dict[str, str]]]:
    """The topics a worker of `engine` needs before it starts, and the configs of those that have
    one: the app's topics and its state's changelogs, made as the engine makes them
    (`made_configs`; the journal's and the claims' are `clients.admin.DEFAULT_CONFIGS`).

    Each engine makes its changelogs itself at start-up, and raced there:
    - Faust: on Apache Kafka its consumer could keep a snapshot of the cluster's metadata taken
      before they existed, and the ledger's first table write failed its partition check ("the
      changelog topic ... has 0 partitions") at every restart of the agent, until the next
      metadata refresh minutes later;
    - Quix: of two workers started at once (seen on Apache Kafka with 32 partitions), the one
      whose creation found the topic already made by the other looked it up before its broker's
      metadata showed it, and stopped with Quix's `TopicNotFoundError`. `ensure_topics` takes
      "already exists" for done and waits until every partition has a leader."""
    changelogs = tuple(state_topics(engine, app_id).values())
    made = made_configs(engine, app_id)
    return ALL_TOPICS + changelogs, {c: made[c] for c in changelogs}


def ensure_worker_topics(engine: str, app_id: str, bootstrap: str, partitions: int,
                         replication_factor: int | None = None,
                         **client_kwargs: Any) -> TopicsReport:
    """Creates the topics a worker of `engine` needs (`worker_topics`; and a Faust worker's
    leader topic, which Faust would make itself: `engine_topics`), unless the app's
    state is in the other engine's changelogs (`state_elsewhere`): then raises
    `clients.admin.Refused` saying why, having created nothing. A Quix worker's state changelogs
    get their source topic's partition count, as Quix makes them and checks them; so where the
    worker may not create topics, they are named in the same round as their sources. (A Faust
    worker's follow `partitions`, the count of its tables.) `client_kwargs`: the worker's
    SASL/TLS settings (`WorkerSettings.client_kwargs`)."""
    names, configs = worker_topics(engine, app_id)
    own = engine_topics(engine, app_id)
    follow = state_sources(engine, app_id) if engine == "quix" else {}
    return ensure_topics(bootstrap, partitions, [*names, *own], configs=configs, counts=own,
                         follow=follow, replication_factor=replication_factor,
                         refuse=lambda present: state_elsewhere(engine, app_id, present),
                         **client_kwargs)


def start_worker_topics(engine: str, settings: Any) -> TopicsReport | None:
    """`ensure_worker_topics` for a worker about to start with `settings` (a
    `streams.pipeline.settings.WorkerSettings`), then the checks of the topics' settings
    (`config_problem`) and layout (`layout_problem`); or None after saying on stderr why it
    cannot start (it then exits 2): the app's state is in the other engine's changelogs, a
    topic's settings would lose history or state, the topics are not laid out for their
    partition counts, the cluster cannot hold the replication factor, the broker will not
    describe the settings of a topic a Quix worker uses, or the broker could not be reached,
    refused the client, or did not make the topics usable in time."""
    try:
        report = ensure_worker_topics(engine, settings.app_id, settings.bootstrap,
                                      settings.partitions, settings.replication_factor,
                                      **settings.client_kwargs)
        problem = (config_problem(engine, settings.app_id, settings.bootstrap,
                                  used=worker_topics(engine, settings.app_id)[0],
                                  made=True, **settings.client_kwargs)
                   or layout_problem(engine, settings.app_id, settings.bootstrap,
                                     **settings.client_kwargs))
    except Refused as refused:
        print(f"mynapoint worker: {refused}", file=sys.stderr)
        return None
    except CannotCreate as exc:
        hint = ""
        if exc.code == INVALID_REPLICATION_FACTOR:
            hint = (f"; the cluster has fewer brokers than that: set --replication-factor "
                    f"({ENV['replication_factor'].var}) to at most their number (unset, the "
                    "cluster's default.replication.factor applies)")
        elif exc.code in NOT_AUTHORIZED:
            hint = ("\nThen start the worker again (docs/RUNBOOK.md, \"Topics made "
                    "beforehand\"): it makes no topic that exists, so it needs no Create "
                    "permission")
        print(f"mynapoint worker: {exc}{hint}", file=sys.stderr)
        return None
    except (TopicError, HistoryError) as exc:
        print(f"mynapoint worker: {exc}. Check --bootstrap ({ENV['bootstrap'].var}) and, on a "
              "secured cluster, --sasl-mechanism, --sasl-username, --sasl-password and "
              "--ssl-cafile (their MYNAPOINT_ variables)", file=sys.stderr)
        return None
    if problem is not None:
        print(f"mynapoint worker: {problem}", file=sys.stderr)
        return None
    return report


#: How many of the last records of each journal and claims partition the layout check reads.
LAYOUT_TAIL = 16


def state_sources(engine: str, app_id: str) -> dict[str, str]:
    """Each state changelog of `engine`'s workers -> the topic whose partitions it follows."""
    if engine == "faust":
        return {topics.changelog_topic(app_id, table): source
                for table, (source, _) in QUIX_STATE_OF_TABLE.items()}
    return {changelog: source for source, changelog in state_topics(engine, app_id).items()}


def made_configs(engine: str, app_id: str) -> dict[str, dict[str, str]]:
    """The settings the workers of `engine` make the app's stateful topics with: the journal and
    the claims keep every record (`clients.admin.DEFAULT_CONFIGS`); the state changelogs are
    compacted as the engine makes them (Faust's `topics.CHANGELOG_CONFIG`, Quix's
    `topics.QUIX_CHANGELOG_CONFIG`). `rescale` and `takeover` make a topic again with these,
    under the settings made on it since."""
    changelog = topics.CHANGELOG_CONFIG if engine == "faust" else topics.QUIX_CHANGELOG_CONFIG
    out = {t: dict(c) for t, c in DEFAULT_CONFIGS.items()}
    out |= {c: dict(changelog) for c in state_sources(engine, app_id)}
    return out


def required_configs(engine: str, app_id: str) -> dict[str, dict[str, str]]:
    """The settings in effect a worker of `engine` requires of its stateful topics."""
    out = {t: dict(topics.HISTORY_REQUIRED) for t in (topics.JOURNAL, topics.CLAIMS)}
    out |= {c: dict(topics.CHANGELOG_CONFIG) for c in state_sources(engine, app_id)}
    return out


def config_problem(engine: str, app_id: str, bootstrap: str, *, used: Iterable[str] = (),
                   made: bool = False, timeout: float = 30.0,
                   **client_kwargs: Any) -> str | None:
    """Why a worker of `engine` must not start with these topics' settings, or None: the
    journal and the claims must keep every record (`topics.HISTORY_REQUIRED`), the state
    changelogs be compacted (`streams.audit.layout.config_problems`). A topic whose settings
    the broker will not describe (an ACL without DescribeConfigs) is not judged: a Faust worker
    logs a warning and starts; a Quix worker, whose engine reads the settings of every topic it
    uses (`used`, and the changelogs) and stops with a traceback when refused, is refused here.
    `made`: the topics were just made or found, so one that a broker does not know yet is asked
    for again (`clients.admin.topic_configs_async`). Raises `TopicError` when the broker cannot
    be read."""
    from clients.admin import topic_configs
    from streams.audit.layout import config_message, config_problems

    required = required_configs(engine, app_id)
    # Only Quix reads the settings of the other topics it uses; a Faust worker needs none of them.
    names = list(dict.fromkeys([*required, *used])) if engine == "quix" else list(required)
    found = topic_configs(bootstrap, names, made=made, timeout=timeout, **client_kwargs)
    if engine == "quix" and found.errors:
        said = "; ".join(f"{t} ({why})" for t, why in sorted(found.errors.items()))
        user = client_kwargs.get("sasl_plain_username") or "NAME"
        commands = "; ".join(
            f"kafka-acls.sh --bootstrap-server {bootstrap} --add --allow-principal User:{user} "
            f"--operation DescribeConfigs --topic {t}" for t in sorted(found.errors))
        return (f"the broker refused to describe the settings of {said}. Quix Streams reads "
                "the settings of every topic it uses (DescribeConfigs) when it starts. This "
                "worker decided nothing. Allow this client DescribeConfigs on them, then start "
                f"the worker again: {commands}")
    for topic, why in sorted(found.errors.items()):
        if topic in required:
            wanted = ",".join(f"{k}={v}" for k, v in required[topic].items())
            log.warning("the settings of %s were not checked: the broker did not describe them "
                        "(%s). Allow this client DescribeConfigs on it, or check by hand that "
                        "it has %s", topic, why, wanted)
    return config_message(config_problems(required, found.settings), bootstrap)


def layout_problem(engine: str, app_id: str, bootstrap: str, *, timeout: float = 60.0,
                   **client_kwargs: Any) -> str | None:
    """Why a worker of `engine` must not start on these topics, or None: the last
    `LAYOUT_TAIL` records of each journal and claims partition must be on their key's partition
    at the topic's partition count, and each state changelog must have its source topic's count
    (`streams.audit.layout`). Raises `HistoryError` when the broker cannot be read."""
    from clients.connect import run_blocking
    from streams.audit.layout import count_mismatches, layout_message, misplaced

    sources = state_sources(engine, app_id)
    keyed = (topics.JOURNAL, topics.CLAIMS)
    # Called once the worker's topics were made or found: a broker that does not list them yet
    # has not applied their creation (`made`).
    dump = run_blocking(read_topics(bootstrap, keyed, optional=list(sources),
                                    only=dict.fromkeys(sources, ()), tail=LAYOUT_TAIL,
                                    made=True, timeout=timeout, **client_kwargs))
    wrong = [m for t in keyed
             for m in misplaced(t, ((r.partition, r.offset, r.key) for r in dump.records[t]),
                                dump.partitions[t])]
    return layout_message(wrong, count_mismatches(sources, dump.partitions), dump.partitions)


class StateRows:
    """A state changelog's latest value per key (as compaction keeps it), folded as its records
    are read, so that the records a key had before its latest are never all held; of a Quix
    changelog, only the rows of the state itself (its column family `default`)."""

    def __init__(self, engine: str) -> None:
        self.quix = engine == "quix"
        self.rows: dict[bytes, bytes] = {}

    def add(self, records: Iterable[Any]) -> None:
        """Folds in the next records (a key's in their order)."""
        if self.quix:
            records = (r for r in records if column_family(r) == QUIX_COLUMN_FAMILY)
        latest_values(((r.key, r.value) for r in records), into=self.rows)


def state_rows(engine: str, records: Iterable[Any]) -> dict[bytes, bytes]:
    """The latest value per key of a state changelog's records (`StateRows`, all at once)."""
    rows = StateRows(engine)
    rows.add(records)
    return rows.rows


def state_headers(topic: str) -> list[Header]:
    """The headers a row written to the state changelog `topic` carries: on a Quix changelog,
    the column family its recovery requires; none on Faust's."""
    if topics.is_quix_changelog(topic):
        return [(QUIX_COLUMN_FAMILY_HEADER, QUIX_COLUMN_FAMILY)]
    return []


def column_family(record: Any) -> bytes | None:
    for name, value in record.headers or ():
        if name == QUIX_COLUMN_FAMILY_HEADER:
            return bytes(value)
    return None


class OfflineFailed(RuntimeError):
    """An offline job stopped; the message says what to do."""


class OfflineJob:
    """The Kafka side of an offline command: its admin client and the helpers built on it."""

    #: The command's name, in messages (\"run {command} again\").
    command = "the command"
    #: The exception the job raises, with what to do.
    failure: type[Exception] = OfflineFailed

    def __init__(self, bootstrap: str, app_id: str, *, timeout: float = 300.0,
                 **client_kwargs: Any) -> None:
        self.bootstrap = bootstrap
        self.app_id = app_id
        self.timeout = timeout
        self.client_kwargs = client_kwargs
        self.admin: Any = None

    async def connect(self) -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        from clients.connect import failure_text, quiet_connect_errors

        self.admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap,
                                         request_timeout_ms=60_000, **self.client_kwargs)
        try:
            with quiet_connect_errors():
                await asyncio.wait_for(self.admin.start(), min(self.timeout, 60))
        except Exception as exc:  # noqa: BLE001 - any failure to connect says the same
            await self.admin.close()
            raise self.failure(f"cannot reach a Kafka broker at {self.bootstrap} "
                               f"({failure_text(exc)}): pass --bootstrap HOST:PORT "
                               "or set MYNAPOINT_BOOTSTRAP") from None

    async def close(self) -> None:
        await self.admin.close()

    async def ask(self, request: Callable[[], Awaitable[T]]) -> T:
        """`request()`, a request of the job's admin client, asked again of another broker while
        the one it went to does not answer, for up to the job's timeout
        (`clients.admin.any_broker`: a broker that died is still in the metadata for a while).
        Each request used so is safe to repeat. Unanswered, the job stops saying so."""
        try:
            return await any_broker(request, time.monotonic() + self.timeout)
        except TimeoutError:
            raise self.failure(f"no broker of {self.bootstrap} answered within "
                               f"{self.timeout:g} s: check that the cluster is up, then run "
                               f"{self.command} again") from None

    async def _refuse_active_members(self) -> None:
        """Stops the job while any worker of the app's consumer group is running."""
        deadline = time.monotonic() + 60
        while True:
            try:
                described = await self.admin.describe_consumer_groups([self.app_id])
                break
            except Exception as exc:  # noqa: BLE001 - the coordinator may be loading: retried
                if time.monotonic() > deadline:
                    raise self.failure(f"cannot describe the consumer group {self.app_id!r} "
                                        f"({exc!r})") from None
                await asyncio.sleep(0.5)
        for response in described:
            for group in response.groups:
                error, _gid, state_name, _ptype, _proto, members = group[:6]
                if members:
                    hosts = sorted({str(m[2]) for m in members if m[2]})
                    # Tansu names no member's host, and keeps a stopped worker as a member.
                    where = (f"from {', '.join(hosts)}" if hosts else
                             "no host named: on the local Tansu broker, a stopped worker stays a "
                             "member, so this command needs Apache Kafka")
                    raise self.failure(
                        f"{len(members)} worker(s) of app {self.app_id!r} are still running "
                        f"(group state {state_name}, {where}): stop every worker first, then run "
                        f"{self.command} again (a worker started with --instance-id stays in the "
                        "group for its --session-timeout after it stops)")

    async def _read(self, wanted: list[str], **kwargs: Any) -> Any:
        try:
            return await read_topics(self.bootstrap, wanted, timeout=self.timeout,
                                     **kwargs, **self.client_kwargs)
        except HistoryError as exc:
            raise self.failure(str(exc)) from None

    async def _partition_counts(self, names: list[str]) -> dict[str, int]:
        described = await self.ask(lambda: self.admin.describe_topics(names))
        out = {}
        for t in described:
            if t.get("error_code", 0) == 0 and t.get("partitions"):
                out[t["topic"]] = len(t["partitions"])
        return out

    async def _replication(self, names: list[str]) -> dict[str, int]:
        described = await self.ask(lambda: self.admin.describe_topics(names))
        out = {}
        for t in described:
            parts = t.get("partitions") or []
            if t.get("error_code", 0) == 0 and parts:
                out[t["topic"]] = max(len(p.get("replicas") or [1]) for p in parts)
        return out

    async def _wait_counts(self, names: list[str], m: int) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            counts = await self._partition_counts(names)
            if all(counts.get(t) == m for t in names):
                return
            if time.monotonic() > deadline:
                raise self.failure(f"{names} did not reach {m} partitions in {self.timeout:g} s")
            await asyncio.sleep(0.2)

    async def _committed(self) -> dict[str, dict[int, int]]:
        offsets = await self.ask(
            lambda: self.admin.list_consumer_group_offsets(self.app_id))
        out: dict[str, dict[int, int]] = {}
        for tp, meta in offsets.items():
            if meta.offset >= 0:
                out.setdefault(tp.topic, {})[tp.partition] = int(meta.offset)
        return out

    async def _remade_configs(self, engine: str, names: list[str]) -> dict[str, dict[str, str]]:
        """What each of `names` that exists is made again with: the settings the workers of
        `engine` make it with (`made_configs`), under those made on the topic itself since
        (not the broker's defaults; Tansu reports a topic's own settings as defaults, so only
        the first count there)."""
        present = set(await self.ask(self.admin.list_topics))
        found = await describe_topic_configs(self.admin, [n for n in names if n in present],
                                             own_only=True)
        if found.errors:
            said = "; ".join(f"{t} ({why})" for t, why in sorted(found.errors.items()))
            raise self.failure(
                f"cannot read the settings of {said}, so {self.command} could not make them "
                "again; nothing was changed. Allow this client DescribeConfigs on the app's "
                f"topics (an ACL), then run {self.command} again")
        made = made_configs(engine, self.app_id)
        return {t: {**made.get(t, {}), **own} for t, own in found.settings.items()}

    async def _recreate(self, topic: str, partitions: int, configs: Mapping[str, str],
                        replicas: int) -> None:
        """Deletes `topic` if it exists and creates it empty with `partitions`."""
        from aiokafka.admin import NewTopic

        deadline = time.monotonic() + self.timeout
        if topic in set(await self.ask(self.admin.list_topics)):
            await self.ask(lambda: self.admin.delete_topics([topic], timeout_ms=60_000))
        # Deletion is asynchronous: the topic is created again once it is gone.
        while True:
            if topic not in set(await self.ask(self.admin.list_topics)):
                # Not asked again: a repeat would find the topic made and take it for the old.
                response = await self.admin.create_topics(
                    [NewTopic(topic, partitions, replicas, topic_configs=dict(configs))],
                    timeout_ms=60_000)
                _, code, message = topic_errors(response)[0]
                if code == 0:
                    break
                if code != TOPIC_ALREADY_EXISTS:
                    raise self.failure(f"cannot create {topic}: error {code} {message}")
            if time.monotonic() > deadline:
                raise self.failure(f"{topic} was not deleted within {self.timeout:g} s: run "
                                   f"{self.command} again")
            await asyncio.sleep(0.2)
        await self._wait_counts([topic], partitions)

    async def _send(self, records: Iterable[Outgoing]) -> None:
        """Sends `records` (a list, or records made as they are sent), acknowledged by every
        replica, each partition's in their order.

        Records are put into one batch per partition as they come, and a batch is handed to the
        producer when full (or at the end): the producer's per-record `send` costs about five
        times as much CPU (9 against 2 us a record here), and the offline commands send the
        whole journal and every table row. The producer keeps a partition's batches in their
        order and lets one wait per partition (back-pressure)."""
        it = iter(records)
        first = next(it, None)
        if first is None:
            return
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all",
                                    enable_idempotence=True, linger_ms=5,
                                    max_batch_size=_SEND_BATCH_BYTES, **self.client_kwargs)
        await producer.start()
        delivered: list[Any] = []  # the batches handed over, until their delivery is checked
        try:
            batches: dict[tuple[str, int], Any] = {}

            async def send(topic: str, partition: int, batch: Any) -> None:
                delivered.append(await producer.send_batch(batch, topic, partition=partition))
                if len(delivered) >= 64:
                    await asyncio.gather(*delivered)
                    delivered.clear()

            for topic, partition, key, value, headers in itertools.chain((first,), it):
                batch = batches.get((topic, partition))
                if batch is None:
                    batch = batches[(topic, partition)] = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None,
                                headers=headers or []) is None:  # full: send it, start another
                    await send(topic, partition, batch)
                    batch = batches[(topic, partition)] = producer.create_batch()
                    # An empty batch takes any record (one larger than a batch goes alone).
                    batch.append(key=key, value=value, timestamp=None, headers=headers or [])
            for (topic, partition), batch in batches.items():
                await send(topic, partition, batch)
            await asyncio.gather(*delivered)
            delivered.clear()
        finally:
            await producer.stop()
            # On a failure, what the batches handed over came to (stop() flushed them): retrieved,
            # so that none of their errors is left unread; the one raised above stands.
            await asyncio.gather(*delivered, return_exceptions=True)
