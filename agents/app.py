"""The Faust application: intake, ledger and claims agents around the pure core.

    inputs (6 topics, key person_id)
        |  intake: decode + validate; bad records -> mynapoint.deadletter
        v
    mynapoint.journal (key person_id) <-------------------------------+
        |  ledger: streams.core.ledger.fold over the `persons` table        |
        |          -> decisions / grants / alerts                      |
        |          -> claims (key: payment account, or budget key)     |
        v                                                              |
    mynapoint.claims  -- claims: first come, first served per key -----+ (answers, key person_id)

This module only wires: the Faust app, its topics and tables, and one module per agent
(agents/intake.py, agents/ledger.py, agents/claims.py) plus the status API (agents/web.py).
Each agent hands its records to the engine-independent step of the same name
(streams/pipeline/), which decodes, reads the table, calls the core, writes the table, sends
and counts, through the runtime boundary of streams/pipeline/runtime.py. Every table value is
replaced whole (`table[key] = value`): Faust changelogs only on assignment.
"""

from __future__ import annotations

import logging
from typing import Any

import faust
from mode import Service

from agents import claims as claims_agent
from agents import intake, ledger, metrics, web
from agents.faust_private import (
    ack_only_what_a_stream_took,
    declare_only_missing_topics,
    fenced,
    flush_before_transactional_commits,
    is_fenced_error,
    name_fenced_instance_ids,
    recover_to_the_end_in_exactly_once,
    rejoining_assignor,
    seek_before_resuming_streams,
    track_handovers,
)
from agents.outputs import outputs
from agents.settings import TUNING, WorkerSettings
from schemas import topics
from streams.core.config import RulesConfig, load_config
from streams.pipeline.metrics import count_assignment
from streams.pipeline.runtime import pinned_partitions

__all__ = ["TUNING", "FencedWorker", "WorkerSettings", "create_app"]

log = logging.getLogger("mynapoint")

#: How often a static member checks whether the broker fenced it (seconds).
FENCED_CHECK_EVERY = 1.0


class FencedWorker(RuntimeError):
    """The broker gave this worker's instance id to another worker: this one must stop."""


class StopWhenFenced(Service):
    """Crashes the app, and so stops the worker, once the broker has fenced it (`fenced`).

    A service started with the app, not a Faust timer: Faust starts its timers only once the
    first table recovery is complete, and a worker fenced while it joins can wait in that
    recovery for ever (seen on Apache Kafka)."""

    def __init__(self, app: faust.App, message: str) -> None:
        super().__init__()
        self._app, self._message = app, message
        self._said = False

    @Service.task
    async def _watch(self) -> None:
        while not self.should_stop:
            if (error := fenced(self._app)) is not None:
                self._say(error)
                await self._app.crash(FencedWorker(self._message))
                return
            await self.sleep(FENCED_CHECK_EVERY)

    async def on_stop(self) -> None:
        # The error can stop the app before `_watch` looks: a fetch raises what aiokafka's
        # coordinator holds, and Faust's fetcher crashes the app with it (seen on Apache Kafka).
        reason = getattr(self._app, "crash_reason", None)
        if reason is not None and is_fenced_error(reason):
            self._say(reason)

    def _say(self, error: BaseException) -> None:
        if not self._said:
            self._said = True
            log.error("%s (%s)", self._message, error)


def fenced_message(app_id: str, instance_id: str) -> str:
    return (f"another worker joined group '{app_id}' with this worker's instance id "
            f"'{instance_id}' (--instance-id, MYNAPOINT_INSTANCE_ID), and the broker fenced this "
            "one out of the group: it stops. Each worker needs an instance id of its own; start "
            "this one again with another id, or not at all if the other one replaces it")


def raw_table(app: faust.App, name: str, partitions: int) -> Any:
    """A table of bytes -> bytes: values are msgpack made by the core, not Faust's JSON.

    Faust derives a table's serializers from its key/value types and falls back to JSON for plain
    types, so they are set to raw here, before the store (which captures them) is first opened.
    """
    table = app.Table(name, partitions=partitions, key_type=bytes, value_type=bytes)
    # Faust's TableT stub lacks the serializer attributes its Collection implementation has.
    table.key_serializer = "raw"  # type: ignore[attr-defined]
    table.value_serializer = "raw"  # type: ignore[attr-defined]
    return table


def create_app(settings: WorkerSettings, cfg: RulesConfig | None = None,
               journal_partitions: int | None = None,
               claims_partitions: int | None = None) -> faust.App:
    """The Faust app of the worker; `journal_partitions` and `claims_partitions`: the journal's
    and the claims' partition counts as the broker has them (`settings.partitions` when not
    given), which intake's batches and every record sent to these topics follow
    (`pinned_partitions`)."""
    rules = cfg if cfg is not None else load_config(settings.config_path)
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap}",
        broker_credentials=settings.broker_credentials,
        store="rocksdb://",
        datadir=settings.data_dir,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor or 1,
        web_port=settings.web_port,
        web_host=settings.web_host,
        web_bind=settings.web_host,
        broker_session_timeout=settings.session_timeout,
        # Faust refuses a session timeout longer than the request timeout (90 s by default).
        broker_request_timeout=max(90.0, settings.session_timeout + 30.0),
        broker_rebalance_timeout=10,
        # Static membership (`--instance-id`): aiokafka then sends no LeaveGroup when the worker
        # stops, and the broker gives the worker coming back with the same id its partitions.
        consumer_group_instance_id=settings.instance_id,
        # ... and one that comes back under another status API address rebalances the group.
        PartitionAssignor=rejoining_assignor(),
        broker_heartbeat_interval=1,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=settings.standby_replicas,
        # Faust would otherwise wait, at every rebalance and at shutdown, for every message its
        # streams hold to be acknowledged. Intake holds records for event-time alignment and
        # acknowledges them only once journaled, which cannot happen while the rebalance has
        # stopped the flow: the worker waited forever ("wait_empty: Waiting for tasks"). Not
        # waiting is safe here: unacknowledged records are never committed, so they are read
        # again after the rebalance (Faust seeks every partition to its committed offset); an
        # agent's table writes are done before its first await, so none is cut in half.
        stream_wait_empty=False,
        processing_guarantee=settings.processing_guarantee,
        **{**TUNING, **settings.extra},
    )

    # Offsets are committed only after everything sent so far was delivered, in both modes.
    flush_before_transactional_commits(app)
    # ... and never past a record an agent has not handled yet.
    seek_before_resuming_streams(app)
    # Table recovery reads every changelog to its end, in both modes.
    recover_to_the_end_in_exactly_once(app)
    # A step's seek in answer to a record waits until Faust's fetch loop is done with it.
    track_handovers(app)
    # Records a stream skipped during a rebalance are read again, not committed past.
    ack_only_what_a_stream_took(app)
    # Faust asks to create none of its topics that exist (the worker makes them beforehand), so
    # the worker needs no Create permission.
    declare_only_missing_topics(app)

    raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw",
                           "value_serializer": "raw"}
    inputs = app.topic(*topics.INPUT_TOPICS, **raw)
    journal = app.topic(topics.JOURNAL, partitions=settings.partitions, **raw)
    claims = app.topic(topics.CLAIMS, partitions=settings.partitions, **raw)

    # `schemas.topics.TABLES`, whose changelogs the worker creates before Faust starts.
    tables = {name: raw_table(app, name, settings.partitions) for name in topics.TABLES}
    persons, holders = tables["persons"], tables["claims"]
    # Each person's published outcomes, as JSON lines in chunks (streams/core/timeline.py), for the
    # status API.
    timeline = tables["timeline"]
    metrics.register_tables(tables)

    journal_partitions = journal_partitions or settings.partitions
    out = outputs(app, pinned_partitions(journal_partitions,
                                         claims_partitions or settings.partitions))
    intake_step = intake.register(app, inputs, out, settings.idle_wait,
                                  settings.max_held_per_partition, journal_partitions,
                                  settings.journal_batch)
    ledger_step, journal_rereads = ledger.register(app, journal, persons, timeline, out, rules)
    claims_rereads = claims_agent.register(app, claims, holders, out, rules)

    # One handler for what a rebalance takes away: each step forgets its partitions. Faust's
    # stub wants a receiver taking any positional arguments; the signal sends one (`revoked`)
    # plus `signal=` as a keyword.
    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def forget_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        intake_step.revoked({(tp.topic, tp.partition) for tp in revoked
                             if tp.topic in topics.INPUT_TOPICS})
        ledger_step.revoked({tp.partition for tp in revoked if tp.topic == topics.JOURNAL})
        journal_rereads.revoked({(tp.topic, tp.partition) for tp in revoked
                                 if tp.topic == topics.JOURNAL})
        claims_rereads.revoked({(tp.topic, tp.partition) for tp in revoked
                                if tp.topic == topics.CLAIMS})

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def count_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        count_assignment()

    # Kafka's error for a fenced static member gets a name in aiokafka's logs, and such a worker
    # stops instead of staying alive and idle.
    name_fenced_instance_ids()
    if settings.instance_id:
        app.add_dependency(StopWhenFenced(app, fenced_message(settings.app_id,
                                                              settings.instance_id)))

    app.mynapoint_rules = rules  # type: ignore[attr-defined]
    app.mynapoint_tables = tables  # type: ignore[attr-defined]
    web.register_views(app, tables, rules, settings.status_token)
    return app
