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

Agents only decode, read a table, call the core, write the table, send outcomes and count
metrics. Every table value is replaced whole (`table[key] = value`): Faust changelogs only on
assignment.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.types import TP

from agents import metrics, web
from schemas import topics
from schemas.codec import (
    BAD_KEY,
    DECODE_ERRORS,
    INTERNAL_ERROR,
    OUTCOME_ENCODER,
    UNREADABLE_CLAIM,
    UNREADABLE_JOURNAL_ENTRY,
    UNREADABLE_STATE,
    BadInput,
    decode_event,
    mask_my_numbers,
    raw_excerpt,
)
from schemas.journal import (
    CLAIM_DECODER,
    JOURNAL_ENCODER,
    AnswerEntry,
    ClaimRequest,
    EventEntry,
)
from schemas.outcomes import Alert, DeadLetter, Decision, Grant, Outcome
from streams.core.align import Aligner
from streams.core.claims import claim_account, claim_reservation
from streams.core.config import RulesConfig, load_config
from streams.core.ledger import (
    RECORD_ENCODER,
    UNKNOWN_AT,
    Folded,
    LedgerRecord,
    fold,
    remembered_lines,
)
from streams.core.rules import BUDGET_KEY
from streams.core.timeline import writes_after_fold as timeline_writes
from streams.core.versions import VersionError, decode_journal_entry, decode_ledger_record

log = logging.getLogger("mynapoint")

_OUTPUT_TOPIC = {Decision: topics.DECISIONS, Grant: topics.GRANTS, Alert: topics.ALERTS,
                 DeadLetter: topics.DEADLETTER}
_RESERVED_PREFIX = b"reserved\x00"
#: How often held records are re-examined when no new record arrives (seconds).
ALIGN_TICK = 0.1
_BUDGET_COUNT_KEY = b"count\x00" + BUDGET_KEY.encode()


#: The Faust tuning measured in ../shared/notes/PERFORMANCE.md (larger batches and fetches);
#: bench/bench_pipeline.py gives its bare Faust relay the same, so the two compare fairly.
TUNING: dict[str, Any] = {
    "producer_linger_ms": 10,
    "producer_max_batch_size": 256 * 1024,
    "stream_buffer_maxsize": 65536,
    "broker_max_poll_records": 5000,
    "consumer_max_fetch_size": 4 * 1024 * 1024,
    "broker_commit_every": 10000,
    "broker_commit_interval": 1.0,
}


@dataclass
class WorkerSettings:
    bootstrap: str = "127.0.0.1:9092"
    app_id: str = "mynapoint"
    data_dir: str = "var/worker"
    partitions: int = topics.DEFAULT_PARTITIONS
    config_path: str | None = None
    web_port: int = 6066
    web_host: str = "127.0.0.1"
    metrics_port: int | None = 9108
    metrics_host: str = "127.0.0.1"
    broker_credentials: Any = None
    tansu_compat: bool = False
    # Event-time alignment: how long a silent input may hold back later events (seconds).
    idle_wait: float = 3.0
    # Bearer token of the status API (agents/web.py); None: no token asked.
    status_token: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def dead_letter(
    exc: BadInput, topic: str, partition: int, offset: int, value: bytes | None
) -> DeadLetter:
    return DeadLetter(
        error=exc.message,
        reason=exc.reason,
        outcome_id=f"{topic}/{partition}/{offset}",
        topic=topic,
        partition=partition,
        offset=offset,
        event_id=exc.fields.get("event_id"),
        person_id=exc.fields.get("person_id"),
        type=exc.fields.get("type"),
        raw=raw_excerpt(value) if value is not None else None,
    )


def validate_record(key: bytes | None, value: bytes | None):
    """The event of one input record, or `BadInput` saying what is wrong with it."""
    if value is None:
        raise BadInput("missing_value", "the record has no value: send the JSON event as the value")
    ev = decode_event(value)
    if key is None:
        raise BadInput(
            BAD_KEY,
            "the record has no key: key every record by its person_id so a person's events "
            "stay in one partition",
            {"event_id": ev.event_id, "person_id": ev.person_id},
        )
    if key != ev.person_id.encode():
        raise BadInput(
            BAD_KEY,
            "the record key is not the event's person_id: key every record by its person_id",
            {"event_id": ev.event_id, "person_id": ev.person_id},
        )
    return ev


def checked_record(key: bytes | None, value: bytes | None):
    """`validate_record`, with any other failure (a bug) turned into an `internal_error`.

    An agent that raises is restarted by Faust and the record it was on is lost; every input
    record must end as an event or a dead letter instead.
    """
    try:
        return validate_record(key, value)
    except BadInput:
        raise
    except Exception as bug:
        raise BadInput(INTERNAL_ERROR, f"validating this record failed ({type(bug).__name__}: "
                       f"{bug}); this is a bug: report it with this dead letter") from bug


_UNREADABLE = (VersionError, *DECODE_ERRORS)


def fold_stored(key: bytes | None, entry_value: bytes | None,
                read: Callable[[bytes], bytes | None],
                rules: RulesConfig, at: int = UNKNOWN_AT,
                committed: int = 0) -> tuple[LedgerRecord | None, Folded]:
    """The person's stored record (`read(key)`) and the fold of one journal record into it.

    `at` is the journal record's offset and `committed` its partition's committed offset: the
    record then forgets the outcomes of entries below it (see `streams.core.ledger.fold`).

    Both are read through `streams.core.versions`, so values stored by an earlier version are upgraded
    on read. What cannot be read or decided raises `BadInput` with the reason to dead-letter it
    under: no journal record stops the ledger.
    """
    try:
        if entry_value is None:
            raise VersionError("the record has no value")
        entry = decode_journal_entry(entry_value)
        if not key:
            raise VersionError("the record has no key (the person_id)")
    except _UNREADABLE as exc:
        raise BadInput(
            UNREADABLE_JOURNAL_ENTRY,
            f"not a journal entry this worker can read ({exc}); only mynapoint workers may write "
            f"to {topics.JOURNAL}: find the other producer, or upgrade this worker if a newer "
            "one wrote it",
        ) from None
    fields = {"person_id": mask_my_numbers(key.decode("utf-8", "replace"))}
    record_value = read(key)
    try:
        record = decode_ledger_record(record_value) if record_value is not None else None
    except _UNREADABLE as exc:
        raise BadInput(
            UNREADABLE_STATE,
            f"the person's stored record cannot be read ({exc}); if a newer worker wrote it, run "
            "that version; the person's journal entries are dead-lettered until then",
            fields,
        ) from None
    try:
        return record, fold(record, entry, rules, at=at, committed=committed)
    except Exception as exc:
        # A bug in the rules or the fold: reported with the record it failed on, which can be
        # replayed from its offset once fixed, instead of stopping every other person.
        raise BadInput(
            INTERNAL_ERROR,
            f"deciding this journal entry failed ({type(exc).__name__}: {exc}); this is a bug: "
            "report it with this dead letter; the entry was not applied",
            fields,
        ) from exc


def _raw_table(app: faust.App, name: str, partitions: int) -> Any:
    """A table of bytes -> bytes: values are msgpack made by the core, not Faust's JSON.

    Faust derives a table's serializers from its key/value types and falls back to JSON for plain
    types, so they are set to raw here, before the store (which captures them) is first opened.
    """
    table = app.Table(name, partitions=partitions, key_type=bytes, value_type=bytes)
    # Faust's TableT stub lacks the serializer attributes its Collection implementation has.
    table.key_serializer = "raw"  # type: ignore[attr-defined]
    table.value_serializer = "raw"  # type: ignore[attr-defined]
    return table


def create_app(settings: WorkerSettings, cfg: RulesConfig | None = None) -> faust.App:
    rules = cfg if cfg is not None else load_config(settings.config_path)
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap}",
        broker_credentials=settings.broker_credentials,
        store="rocksdb://",
        datadir=settings.data_dir,
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        web_port=settings.web_port,
        web_host=settings.web_host,
        web_bind=settings.web_host,
        broker_session_timeout=10,
        broker_rebalance_timeout=10,
        broker_heartbeat_interval=1,
        consumer_auto_offset_reset="earliest",
        **{**TUNING, **settings.extra},
    )

    raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw",
                           "value_serializer": "raw"}
    inputs = app.topic(*topics.INPUT_TOPICS, **raw)
    journal = app.topic(topics.JOURNAL, partitions=settings.partitions, **raw)
    claims = app.topic(topics.CLAIMS, partitions=settings.partitions, **raw)

    persons = _raw_table(app, "persons", settings.partitions)
    holders = _raw_table(app, "claims", settings.partitions)
    # Each person's published outcomes, as JSON lines in chunks (streams/core/timeline.py), for the
    # status API.
    timeline = _raw_table(app, "timeline", settings.partitions)
    metrics.register_tables({"persons": persons, "claims": holders, "timeline": timeline})

    async def send(topic: str, key: bytes | None, value: bytes) -> None:
        # Straight to Faust's producer: `Topic.send` wraps every record in a FutureMessage and a
        # channel hop, about a fifth of the worker's time. Partitioning is the same (the
        # producer's default partitioner on the key), and Faust still flushes this producer
        # before it commits any offset.
        await app.producer.send(topic, key, value, None, None, None)

    async def publish(key: bytes | None, outcomes: list[Outcome]) -> None:
        for o in outcomes:
            await send(_OUTPUT_TOPIC[type(o)], key, OUTCOME_ENCODER.encode(o))
            metrics.count_outcome(o)

    async def refuse(exc: BadInput, msg: Any, value: bytes | None) -> None:
        """A record no agent can use, published as a dead letter naming it; processing goes on."""
        if exc.reason == INTERNAL_ERROR:
            log.error("%s/%s/%s: %s", msg.topic, msg.partition, msg.offset, exc.message,
                      exc_info=exc)
        dl = dead_letter(exc, msg.topic, msg.partition, msg.offset, value)
        # Keyed by the (masked) person id, never by the raw key: it may be a My Number.
        await publish(dl.person_id.encode() if dl.person_id else None, [dl])

    aligner = Aligner(topics.INPUT_TOPICS, settings.idle_wait)
    # One releaser at a time: the journal must receive released records in release order.
    releasing = asyncio.Lock()

    def has_more(topic: str, partition: int, next_offset: int) -> bool:
        # The high watermark of the consumer's last fetch (correct on Tansu too); None before any
        # fetch answered for this partition: then only silence counts.
        tp = TP(topic, partition)
        hw = app.consumer.highwater(tp)
        if hw is None:
            return False
        # A source this worker has read nothing of since it took the partition starts at the
        # group's committed offset (Faust keeps it per partition); everything before that was
        # journaled by an earlier owner.
        # Not on Faust's ConsumerT interface; its Consumer implementation has it.
        committed = app.consumer._committed_offset.get(tp) or 0  # type: ignore[attr-defined]  # noqa: SLF001
        return hw > max(next_offset, committed)

    async def release_aligned() -> None:
        async with releasing:
            for held in aligner.release(time.monotonic(), has_more):
                event, key = held.item
                entry = EventEntry(topic=held.topic, partition=held.partition,
                                   offset=held.offset, value=event.value, late=held.late)
                await send(topics.JOURNAL, key, JOURNAL_ENCODER.encode(entry))
                if held.late:
                    metrics.LATE.labels(held.topic).inc()
                # Acknowledged only now: no input offset is committed past a record that has
                # not reached the journal, so a crash loses nothing that was still held.
                event.ack()
            metrics.HELD.set(aligner.held())

    @app.agent(inputs, name="intake")
    async def intake(stream: Any) -> None:
        async for event in stream.noack().events():
            msg = event.message
            metrics.EVENTS_IN.labels(msg.topic, "intake").inc()
            try:
                ev = checked_record(event.key, event.value)
            except BadInput as exc:
                await refuse(exc, msg, event.value)
                event.ack()
                aligner.passed(msg.topic, msg.partition, msg.offset, time.monotonic())
                await release_aligned()
                continue
            metrics.EVENTS_BY_TYPE.labels(msg.topic, type(ev).__struct_config__.tag).inc()
            aligner.add(msg.topic, msg.partition, msg.offset, ev.occurred_at.timestamp(),
                        (event, event.key), time.monotonic())
            await release_aligned()

    @app.timer(interval=ALIGN_TICK)
    async def release_idle() -> None:
        # Releases what waited for silent sources even when no new record arrives.
        await release_aligned()

    # Faust's stub wants a receiver taking any positional arguments; the signal sends one
    # (`revoked`) plus `signal=` as a keyword.
    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def forget_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        # Held records of revoked partitions were never acknowledged: their new owner reads them.
        aligner.drop({tp.partition for tp in revoked if tp.topic in topics.INPUT_TOPICS})

    @app.agent(journal, name="ledger")
    async def ledger(stream: Any) -> None:
        async for event in stream.events():
            started = time.perf_counter()
            key: bytes = event.key
            msg = event.message
            # Everything below the committed offset was sent (Faust flushes before committing).
            committed = app.consumer._committed_offset.get(msg.tp) or 0  # type: ignore[attr-defined]  # noqa: SLF001
            try:
                record, folded = fold_stored(key, event.value, persons.get, rules,
                                             at=msg.offset, committed=committed)
            except BadInput as exc:
                # The raw value only when it is the record that cannot be read.
                await refuse(exc, msg, event.value if exc.reason == UNREADABLE_JOURNAL_ENTRY
                             else None)
                continue
            if folded.record is not record:
                persons[key] = RECORD_ENCODER.encode(folded.record)
            if folded.outcomes:
                for tkey, tvalue in timeline_writes(key, timeline.get(key),
                                                    remembered_lines(folded.record)):
                    timeline[tkey] = tvalue
            for req in folded.claims:
                await send(topics.CLAIMS, req.key.encode(), JOURNAL_ENCODER.encode(req))
            await publish(key, folded.outcomes)
            if folded.repeat:
                metrics.REPEATS.inc()
            ts = getattr(event.message, "timestamp", None)
            metrics.observe_latency(started, ts)

    @app.agent(claims, name="claims")
    async def claims_agent(stream: Any) -> None:
        async for event in stream.events():
            try:
                req: ClaimRequest = CLAIM_DECODER.decode(event.value)
            except DECODE_ERRORS as exc:
                await refuse(BadInput(UNREADABLE_CLAIM,
                                      f"not a claim request this worker can read ({exc}); only "
                                      f"mynapoint workers may write to {topics.CLAIMS}"),
                             event.message, event.value)
                continue
            key = req.key.encode()
            if req.kind == "account":
                current = holders.get(key)
                holder = current.decode() if current is not None else None
                ans = claim_account(holder, req.person_id)
                if ans.granted and current is None:
                    holders[key] = req.person_id.encode()
            else:
                person_key = _RESERVED_PREFIX + req.person_id.encode()
                already = holders.get(person_key) is not None
                count = int(holders.get(_BUDGET_COUNT_KEY) or b"0")
                ans, new_count = claim_reservation(already, count, rules.reservation_budget)
                if ans.granted and not already:
                    holders[person_key] = b"1"
                    holders[_BUDGET_COUNT_KEY] = str(new_count).encode()
            reply = AnswerEntry(claim_kind=req.kind, claim_key=req.key, person_id=req.person_id,
                                event_id=req.event_id, granted=ans.granted, holder=ans.holder)
            metrics.CLAIMS.labels(req.kind, "granted" if ans.granted else "refused").inc()
            await send(topics.JOURNAL, req.person_id.encode(), JOURNAL_ENCODER.encode(reply))

    app.mynapoint_rules = rules  # type: ignore[attr-defined]
    app.mynapoint_tables = {"persons": persons, "claims": holders, "timeline": timeline}  # type: ignore[attr-defined]
    web.register_views(app, app.mynapoint_tables, rules, settings.status_token)  # type: ignore[attr-defined]
    return app
