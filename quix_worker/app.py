"""The Quix Streams application: the intake, ledger and claims steps (streams/pipeline/) on one
Quix `Application`, with the same topics, keys, outcomes and metrics as the Faust worker.

    inputs (6 topics) --intake--> mynapoint.journal --ledger (state: persons, timeline)--> outcomes
                                        ^                  |
                                        +-- claims <-- mynapoint.claims (state: claim holders)

Each step is handed its records by a dataframe of its topics; the ledger's and the claims'
dataframes are stateful, so Quix keeps their state in RocksDB with a changelog topic, recovers
it, and commits their offsets only with it. Intake keeps no state: what it holds for alignment
is never committed past (quix_worker/private.py), so a crash reads it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from quixstreams import Application, State, message_context

from quix_worker import private
from quix_worker.source import QuixSource, finish
from schemas import topics
from streams.core.config import RulesConfig
from streams.pipeline import metrics
from streams.pipeline.claims import Claims
from streams.pipeline.intake import ALIGN_TICK, RELEASE_EVERY, Intake
from streams.pipeline.ledger import Ledger
from streams.pipeline.outputs import Outputs
from streams.pipeline.rereads import RESEEK_EVERY
from streams.pipeline.runtime import At, Send, Store, pinned_partitions
from streams.pipeline.settings import WorkerSettings
from streams.web import peers

#: Keys of the ledger's state, under the person (Quix scopes a dataframe's state to the record's
#: key): the person's `LedgerRecord`, and the timeline's chunks (streams/core/timeline.py).
PERSONS_TAG = topics.QUIX_PERSONS_TAG
TIMELINE_TAG = topics.QUIX_TIMELINE_TAG

#: Quix's tuning: offsets committed every second as the Faust worker does; librdkafka's
#: murmur2 partitioner, which is Kafka's default one (librdkafka's own default is not), so both
#: engines send a key to the same partition.
#:
#: `fetch.wait.max.ms`: Quix's assignment callback asks ListOffsets for every assigned
#: partition, one at a time (`Application._assign_partitions`, and the changelogs'
#: `RecoveryManager._generate_recovery_partitions`). The request goes on the connection to the
#: partition's leader, where a Fetch of caught-up partitions waits up to this long at the broker
#: first (a broker answers one connection's requests in order). librdkafka's 500 ms made each
#: answer take ~0.5 s: 18.6 s of assignment for 40 partitions, on every restart and rebalance.
COMMIT_INTERVAL = 1.0
CONSUMER_CONFIG: dict[str, Any] = {
    "heartbeat.interval.ms": 1_000,
    "fetch.wait.max.ms": 50,
}
PRODUCER_CONFIG: dict[str, Any] = {
    "partitioner": "murmur2_random",
    "linger.ms": 10,
}
GUARANTEES = {"at_least_once": "at-least-once", "exactly_once": "exactly-once"}

#: librdkafka's default `max.poll.interval.ms`, which it requires to be at least the session
#: timeout (Quix Streams also times its flushes by it, so it is raised only when it must be).
MAX_POLL_INTERVAL_MS = 300_000


def consumer_config(settings: WorkerSettings) -> dict[str, Any]:
    """The consumer's configuration: the tuning above, the session timeout, and with
    `--instance-id` static membership (`group.instance.id`: librdkafka then sends no LeaveGroup
    when the worker stops)."""
    session_ms = int(settings.session_timeout * 1000)
    config = {**CONSUMER_CONFIG, "session.timeout.ms": session_ms}
    if session_ms > MAX_POLL_INTERVAL_MS:
        config["max.poll.interval.ms"] = session_ms
    if settings.instance_id is not None:
        config["group.instance.id"] = settings.instance_id
    return config


class _Current:
    """The `State` of the record being handled (Quix hands one to each call), and the one the
    steps use now: the record's, or that of the person of a batch's entry (`scope`)."""

    __slots__ = ("record", "state")

    def __init__(self) -> None:
        self.record: State | None = None
        self.state: State | None = None

    def scope(self, key: bytes) -> None:
        assert self.record is not None
        self.state = private.state_of(self.record, key)


def _store(current: _Current, tag: bytes) -> Store:
    """The steps' `Store` over the current record's state, its keys under `tag`."""

    def read(key: bytes) -> bytes | None:
        assert current.state is not None
        value: bytes | None = current.state.get_bytes(tag + key)
        return value

    def write(key: bytes, value: bytes) -> None:
        assert current.state is not None
        current.state.set_bytes(tag + key, value)

    return Store(read, write)


def _topic(app: Application, name: str) -> Any:
    """A topic of raw bytes: keys and values are made and read by the steps."""
    return app.topic(name, key_serializer="bytes", value_serializer="bytes",
                     key_deserializer="bytes", value_deserializer="bytes")


def _history_topic(app: Application, name: str) -> Any:
    """The journal or the claims topic, read by a stateful dataframe.

    Quix derives its state's changelog settings from the source topic's `retention.ms` and
    `retention.bytes` as the broker reports them. Tansu reports only what a topic was created
    with, and a topic made by anything but a worker (a producer's auto-creation) has neither:
    what is missing is taken as what a worker creates these topics with.
    """
    topic = _topic(app, name)
    for setting, value in topics.HISTORY_CONFIG.items():
        topic.broker_config.extra_config.setdefault(setting, value)
    return topic


def producer_send(app: Application,
                  partition: Callable[[str, bytes | None], int | None]) -> Send:
    """The engine's `Send`: the app's producer, which every checkpoint flushes before it commits
    (a record it could not deliver fails the checkpoint, and the app stops with it); `partition`
    gives a record's partition, or None for the producer's
    (`streams.pipeline.runtime.pinned_partitions`)."""
    produce = private.producer(app).produce

    async def send(topic: str, key: bytes | None, value: bytes) -> None:
        produce(topic=topic, key=key, value=value, partition=partition(topic, key))

    return send


def create_app(settings: WorkerSettings, rules: RulesConfig,
               connection: Any = None, journal_partitions: int | None = None,
               claims_partitions: int | None = None) -> Application:
    """The application, its dataframes and the steps; `connection` is a Quix `ConnectionConfig`
    (SASL/TLS), or None for a plain bootstrap address; `journal_partitions` and
    `claims_partitions` the journal's and the claims' partition counts as the broker has them
    (`settings.partitions` when not given), which intake's batches and every record sent to
    these topics follow (`pinned_partitions`)."""
    app = Application(
        broker_address=connection or settings.bootstrap,
        consumer_group=settings.app_id,
        state_dir=settings.data_dir,
        auto_offset_reset="earliest",
        commit_interval=COMMIT_INTERVAL,
        # The client id carries the status API's URL, for the other workers (quix_worker/web.py).
        consumer_extra_config={**consumer_config(settings),
                               "client.id": peers.client_id(settings.canonical_url)},
        producer_extra_config=dict(PRODUCER_CONFIG),
        consumer_poll_timeout=ALIGN_TICK,
        processing_guarantee=GUARANTEES[settings.processing_guarantee],  # type: ignore[arg-type]
        loglevel="WARNING",
    )
    if settings.tansu_compat:
        private.correct_end_offsets_for_tansu(app)
    journal_partitions = journal_partitions or settings.partitions
    out = Outputs(producer_send(app, pinned_partitions(
        journal_partitions, claims_partitions or settings.partitions)))

    # Intake: every input topic, one step for all of them.
    source = QuixSource(private.consumer(app),
                        private.acknowledged_offsets(app, topics.INPUT_TOPICS))
    intake = Intake(source, out, settings.idle_wait, settings.max_held_per_partition,
                    journal_partitions=journal_partitions,
                    release_every=RELEASE_EVERY, batch_max=settings.journal_batch)
    on_record, token = intake.on_record, source.token

    def on_input(value: bytes | None, key: bytes | None, timestamp: int, headers: Any) -> None:
        m = message_context()
        topic, partition, offset = m.topic, m.partition, m.offset
        finish(on_record(topic, partition, offset, key, value, token(topic, partition, offset)))

    for name in topics.INPUT_TOPICS:
        app.dataframe(_topic(app, name)).update(on_input, metadata=True)

    ticks = {"release": 0.0, "reseek": 0.0}

    def tick() -> None:
        now = time.monotonic()
        if now - ticks["release"] >= ALIGN_TICK:
            ticks["release"] = now
            finish(intake.release())
        if now - ticks["reseek"] >= RESEEK_EVERY:
            ticks["reseek"] = now
            finish(intake.reseek())

    def assigned(partitions: list[Any]) -> None:
        metrics.count_assignment()
        source.assigned([tp for tp in partitions if tp.topic in topics.INPUT_TOPICS])

    # Ledger: the journal, with the persons' records and timelines in the dataframe's state.
    ledger_state = _Current()
    ledger = Ledger(rules, _store(ledger_state, PERSONS_TAG), _store(ledger_state, TIMELINE_TAG),
                    out, scope=ledger_state.scope)
    on_entry = ledger.on_entry
    metrics.watch_claim_waits(ledger.waits)

    def revoked(partitions: list[Any]) -> None:
        intake.revoked(source.revoked([tp for tp in partitions
                                       if tp.topic in topics.INPUT_TOPICS]))
        ledger.revoked({tp.partition for tp in partitions if tp.topic == topics.JOURNAL})

    private.after_each_poll(app, tick)
    private.on_rebalance(app, assigned, revoked)

    committed = private.committed_offsets(app)

    def on_journal(value: bytes | None, key: bytes | None, timestamp: int, headers: Any,
                   state: State) -> None:
        m = message_context()
        ledger_state.record = ledger_state.state = state
        # Everything below the committed offset was sent (each checkpoint flushes the producer
        # before it commits); 0 when nothing was committed since the partition was assigned.
        finish(on_entry(key, value, At(m.topic, m.partition, m.offset),
                        committed.get((m.topic, m.partition), 0), timestamp / 1000))

    app.dataframe(_history_topic(app, topics.JOURNAL)).update(on_journal, metadata=True,
                                                           stateful=True)

    # Claims: the claims topic, with who holds each claimed key in the dataframe's state.
    holders_state = _Current()
    on_claim = Claims(rules, _store(holders_state, b""), out).on_claim

    def on_claims(value: bytes | None, key: bytes | None, timestamp: int, headers: Any,
                  state: State) -> None:
        m = message_context()
        holders_state.state = state
        finish(on_claim(value, At(m.topic, m.partition, m.offset)))

    app.dataframe(_history_topic(app, topics.CLAIMS)).update(on_claims, metadata=True,
                                                          stateful=True)
    return app
