"""Reading the pipeline's recorded history from Kafka without joining any consumer group.

`replay`, `export`, `explain` and `audit` read the journal, the output topics and the changelog
of the persons' records (the Faust worker's `persons` table, or the Quix Streams worker's journal
state, whose timeline chunks are skipped) from their first offsets with a group-less consumer
(no group, no commits), so running workers are never disturbed: no rebalance, no moved offsets.

Where to stop: at start, each partition's end is taken once, from the high watermark of a Fetch
response (`clients.end_offsets.corrected_end_offsets`), never from `end_offsets()` alone, which
Tansu under-reports when the last batch holds several records; an empty partition gets no Fetch
high watermark on Tansu, and there ListOffsets' 0 is exact. Every partition is then read up to
that end, so all topics are cut at (nearly) the same moment. On a pipeline that is still working,
the entries in flight at that moment show up as differences: replay a pipeline that has caught up.

SASL/TLS come from the same environment variables as the worker's: MYNAPOINT_SASL_MECHANISM,
MYNAPOINT_SASL_USERNAME, MYNAPOINT_SASL_PASSWORD, MYNAPOINT_SSL_CAFILE.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from schemas import topics
from schemas.settings import aiokafka_security, from_env
from schemas.topics import changelog_topic
from streams.audit.export import (
    History,
    Published,
    Subset,
    SubsetError,
    add_journal_records,
    decode_outcome,
    end_line,
    header_line,
    journal_lines,
    keep_subset,
    make_subset,
    note_deleted_starts,
    outcome_line,
    person_subset,
    rules_versions,
    set_table_raw,
    stored_rules_versions,
    table_line,
)
from streams.audit.gcpause import no_cyclic_gc
from streams.core.versions import VersionError, decode_ledger_record

OUTCOME_TOPICS: tuple[str, ...] = topics.OUTPUT_TOPICS


class HistoryError(RuntimeError):
    """The history could not be read (broker unreachable, topic missing, timeout)."""


def client_kwargs_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """aiokafka security settings from the worker's environment variables."""
    env = os.environ if environ is None else environ
    return aiokafka_security(from_env("sasl_mechanism", env), from_env("sasl_username", env),
                             from_env("sasl_password", env), from_env("ssl_cafile", env))


@dataclass
class TopicDump:
    """Raw records per topic, each partition in offset order, up to `ends` (exclusive)."""

    records: dict[str, list[Any]] = field(default_factory=dict)
    ends: dict[str, dict[int, int]] = field(default_factory=dict)
    # Each partition's first offset the broker still holds (its log start: above 0 once
    # retention or DeleteRecords removed its first records).
    begins: dict[str, dict[int, int]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    # How many partitions each topic has (all of them, also those `only` left out).
    partitions: dict[str, int] = field(default_factory=dict)


async def read_topics(
    bootstrap: str,
    wanted: Sequence[str],
    *,
    optional: Sequence[str] = (),
    only: Mapping[str, Collection[int]] | None = None,
    start: Mapping[str, Mapping[int, int]] | None = None,
    tail: int | None = None,
    on_records: Callable[[list[Any]], None] | None = None,
    made: bool = False,
    timeout: float = 120.0,
    **client_kwargs: Any,
) -> TopicDump:
    """Every record of `wanted` (and of `optional`, when they exist) from the first offset to
    the end each partition had when reading began. A missing `wanted` topic is a HistoryError.
    `only` maps a topic to the partitions to read of it (the others: all); `start` a topic's
    partition to the offset to read it from (default: its first); `tail`: only the last `tail`
    records of each partition. `on_records`, when given, gets the records as they are read (one
    partition's at a time, in offset order) instead of the dump, whose lists then stay empty.
    `made`: the `wanted` topics were just made or found (`clients.admin.ensure_topics`), so one
    that the metadata does not list yet is asked for again until the timeout: each broker of a
    cluster applies a topic's creation in its own time, and the one asked may not have yet."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.errors import KafkaError

    from clients.connect import failure_text, quiet_connect_errors
    from clients.end_offsets import corrected_end_offsets

    deadline = time.monotonic() + timeout
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        max_partition_fetch_bytes=4 << 20,
        fetch_max_bytes=64 << 20,
        request_timeout_ms=max(int(min(timeout, 60) * 1000), 1000),
        **client_kwargs,
    )
    try:
        with quiet_connect_errors():
            await asyncio.wait_for(consumer.start(), timeout)
    except (TimeoutError, KafkaError, OSError) as exc:
        await _quiet_stop(consumer)
        raise HistoryError(
            f"cannot reach a Kafka broker at {bootstrap} ({failure_text(exc)}); "
            "pass --bootstrap HOST:PORT or set MYNAPOINT_BOOTSTRAP"
        ) from None
    dump = TopicDump()
    try:
        # The partitions come from this full metadata answer: the consumer's own metadata only
        # covers topics it was assigned (Apache Kafka answers for the topics asked; Tansu
        # happened to answer for all), so asking it would find no partitions at all.
        while True:
            cluster = await asyncio.wait_for(consumer._client.fetch_all_metadata(),
                                             _left(deadline))
            present = cluster.topics()
            missing = [t for t in wanted if t not in present]
            if not (made and missing) or time.monotonic() >= deadline:
                break
            await asyncio.sleep(min(0.1, _left(deadline)))
        if missing:
            raise HistoryError(
                f"topic(s) {missing} do not exist on {bootstrap}: has a worker of the pipeline run "
                "against this broker?"
            )
        dump.missing = [t for t in optional if t not in present]
        names = list(wanted) + [t for t in optional if t in present]
        from aiokafka import TopicPartition

        tps: list[TopicPartition] = []
        for t in names:
            dump.records[t] = []
            parts = cluster.partitions_for_topic(t) or set()
            dump.partitions[t] = len(parts)
            keep = (only or {}).get(t)
            tps.extend(TopicPartition(t, p) for p in sorted(parts) if keep is None or p in keep)
        if not tps:
            return dump
        ends = await asyncio.wait_for(corrected_end_offsets(consumer, tps), _left(deadline))
        begins = await asyncio.wait_for(consumer.beginning_offsets(tps), _left(deadline))
        for tp in tps:
            dump.ends.setdefault(tp.topic, {})[tp.partition] = int(ends[tp])
            dump.begins.setdefault(tp.topic, {})[tp.partition] = int(begins[tp])
        consumer.assign(tps)
        remaining = set()
        for tp in tps:
            begin = max(begins[tp], (start or {}).get(tp.topic, {}).get(tp.partition, 0))
            if tail is not None:
                begin = max(begin, ends[tp] - tail)
            if ends[tp] > begin:
                consumer.seek(tp, begin)
                remaining.add(tp)
            else:
                consumer.pause(tp)
        per_tp: dict[Any, list[Any]] = {tp: [] for tp in tps}
        last = dict.fromkeys(tps, -1)  # the offset of the last record taken of each partition
        read = 0
        while remaining:
            left = deadline - time.monotonic()
            if left <= 0:
                raise HistoryError(
                    f"timed out after {timeout:g} s reading {sorted(names)} from {bootstrap}: "
                    f"{read:,} records read, {len(remaining)} partition(s) not at their end"
                )
            batch = await consumer.getmany(*remaining, timeout_ms=int(min(left, 0.5) * 1000) + 1)
            for tp, recs in batch.items():
                end = ends[tp]
                taken = [r for r in recs if r.offset < end]
                if not taken:
                    continue
                last[tp] = taken[-1].offset
                read += len(taken)
                if on_records is None:
                    per_tp[tp].extend(taken)
                else:
                    on_records(taken)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp] or last[tp] >= ends[tp] - 1:
                    remaining.discard(tp)
                    consumer.pause(tp)
        for tp in tps:
            dump.records[tp.topic].extend(per_tp[tp])
        return dump
    except (TimeoutError, KafkaError) as exc:
        raise HistoryError(f"reading from {bootstrap} failed: {exc!r}") from None
    finally:
        await _quiet_stop(consumer)


async def _quiet_stop(consumer: Any) -> None:
    try:
        await asyncio.wait_for(consumer.stop(), 10)
    except Exception:  # noqa: BLE001 - nothing more to do on the way out
        pass


def _left(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.001)


async def read_history(
    bootstrap: str,
    *,
    app_id: str | None = None,
    journal: bool = True,
    outcomes: bool = True,
    tables: bool = True,
    partitions: frozenset[int] | None = None,
    person: str | None = None,
    timeout: float = 120.0,
    **client_kwargs: Any,
) -> History:
    """The recorded history on `bootstrap`, entries and records upgraded to current versions.

    `History.records` is None when tables were not asked for or the changelog does not exist.
    `partitions`: only the people of these journal partitions (`streams.audit.export.Subset`):
    the journal and the persons changelog are read for those partitions only, the output topics
    whole, then kept by person. `person`: likewise, the partition of this person
    (`person_subset`; for `explain`, which reads one person).
    """
    app = app_id or from_env("app_id") or ""
    changelogs = persons_changelogs(app)
    wanted = ([topics.JOURNAL] if journal else []) + (list(OUTCOME_TOPICS) if outcomes else [])
    subset = await _subset(bootstrap, partitions, timeout, client_kwargs, person=person)
    only = {t: subset.only for t in (topics.JOURNAL, *changelogs)} if subset else None
    dump = await read_topics(bootstrap, wanted, optional=list(changelogs) if tables else [],
                             only=only, timeout=timeout, **client_kwargs)
    with no_cyclic_gc():
        history = _history_of(dump, bootstrap, app, tables)
        return keep_subset(history, subset) if subset else history


#: How many of the last decisions of each partition `latest_rules_versions` reads.
RULES_SAMPLE = 16


async def latest_rules_versions(bootstrap: str, *, timeout: float = 120.0,
                                **client_kwargs: Any) -> dict[str, int]:
    """The rules versions that the last `RULES_SAMPLE` decisions of each partition of the
    decisions topic carry: the configuration the pipeline decides with lately, without reading
    the whole topic (for `whatif`, which otherwise reads the journal only). {}: no decision."""
    dump = await read_topics(bootstrap, [], optional=[topics.DECISIONS], tail=RULES_SAMPLE,
                             timeout=timeout, **client_kwargs)
    return rules_versions(Published(topics.DECISIONS, r.partition, r.offset,
                                    *decode_outcome(r.value))
                          for r in dump.records.get(topics.DECISIONS, ()))


def persons_changelogs(app_id: str) -> tuple[str, str]:
    """Where each engine's worker changelogs the persons' records: the Faust worker's `persons`
    table, the Quix Streams worker's journal state (which holds the timelines too)."""
    return changelog_topic(app_id), topics.quix_changelog_topic(app_id, topics.JOURNAL)


def persons_records(dump: TopicDump, app_id: str) -> tuple[str, list[tuple[Any, bytes]]] | None:
    """The persons changelog found in `dump` and its records, each with its person_id key; None
    when neither engine's is there. The Faust worker's is taken when both are (a deployment that
    changed engines keeps the older one until it is deleted)."""
    changelog = persons_changelog_in(dump, app_id)
    if changelog is None:
        return None
    out = []
    for r in dump.records.get(changelog, ()):
        person = person_of_row(changelog, r.key)
        if person is not None:
            out.append((r, person))
    return changelog, out


def persons_changelog_in(dump: TopicDump, app_id: str) -> str | None:
    """Which persons changelog `dump` found (read with both as `optional`): the Faust worker's when
    both are there (a deployment that changed engines keeps the older one until it is deleted)."""
    for changelog in persons_changelogs(app_id):
        if changelog not in dump.missing:
            return changelog
    return None


def person_of_row(changelog: str, key: bytes | None) -> bytes | None:
    """The person_id key of a persons changelog record's key; None for a row that is not a
    person's record (the Quix worker's journal state holds the timelines too)."""
    if key is None:
        return None
    return topics.quix_person_of(key) if topics.is_quix_changelog(changelog) else key


async def _subset(bootstrap: str, partitions: frozenset[int] | None, timeout: float,
                  client_kwargs: dict[str, Any], *, person: str | None = None) -> Subset | None:
    """The subset of `partitions` of the journal, or of `person`'s partition (the journal's
    partition count read first), or None for the whole history."""
    if partitions is None and person is None:
        return None
    counted = await read_topics(bootstrap, [topics.JOURNAL], only={topics.JOURNAL: ()},
                                timeout=timeout, **client_kwargs)
    count = counted.partitions.get(topics.JOURNAL, 0)
    try:
        if person is not None:
            return person_subset(person, count)
        assert partitions is not None
        return make_subset(partitions, count)
    except SubsetError as exc:
        raise HistoryError(str(exc)) from None


def deleted_starts(dump: TopicDump) -> dict[int, int]:
    """The journal partitions whose first records the broker no longer holds (retention,
    DeleteRecords), each with how many: its log start offset."""
    return {p: b for p, b in sorted(dump.begins.get(topics.JOURNAL, {}).items()) if b > 0}


def _history_of(dump: TopicDump, bootstrap: str, app: str, tables: bool) -> History:
    history = History(source=f"{bootstrap} (app id {app})")
    history.header = {"source": bootstrap, "app_id": app, "ends": dump.ends}
    note_deleted_starts(history, deleted_starts(dump))
    add_journal_records(history, ((r.partition, r.offset, r.key, r.value)
                                  for r in dump.records.get(topics.JOURNAL, ())))
    for t in OUTCOME_TOPICS:
        for r in dump.records.get(t, ()):
            obj, err = decode_outcome(r.value)
            history.outcomes.append(Published(t, r.partition, r.offset, obj, err))
    found = persons_records(dump, app) if tables else None
    if found is not None:
        changelog, records = found
        history.records = {}
        for r, person in records:
            set_table_raw(history, f"{changelog}/{r.partition}/{r.offset}", person, r.value)
    return history


@dataclass
class ExportCounts:
    # Journal lines: one per entry, so a journal record of several entries counts each.
    journal: int = 0
    outcomes: int = 0
    table: int = 0
    tables: bool = False
    unreadable: int = 0  # stored values no upcaster can read (written anyway, as stored)
    # Journal partitions whose first records the broker no longer holds: partition -> how many.
    deleted: dict[int, int] = field(default_factory=dict)
    # The rules versions the exported decisions and grants carry, with their counts.
    rules_versions: dict[str, int] = field(default_factory=dict)


async def export_history(
    bootstrap: str,
    out: BinaryIO,
    *,
    rules_version: str,
    config_toml: str | None,
    app_id: str | None = None,
    tables: bool = True,
    partitions: frozenset[int] | None = None,
    timeout: float = 120.0,
    **client_kwargs: Any,
) -> ExportCounts:
    """Writes the export file (format: streams.audit.export, docs/AUDIT.md) of what is on `bootstrap`.

    Stored values are written as stored, in their own versions, a journal record one line per
    entry (`streams.audit.export.journal_lines`); the table is written as its latest value per
    key. `partitions`: only the people of these journal partitions (as
    `read_history`); the header names them.
    """
    app = app_id or from_env("app_id") or ""
    changelogs = persons_changelogs(app)
    subset = await _subset(bootstrap, partitions, timeout, client_kwargs)
    only = {t: subset.only for t in (topics.JOURNAL, *changelogs)} if subset else None
    dump = await read_topics(bootstrap, [topics.JOURNAL, *OUTCOME_TOPICS],
                             optional=list(changelogs) if tables else [], only=only,
                             timeout=timeout, **client_kwargs)
    found = persons_records(dump, app) if tables else None
    with_tables = found is not None
    counts = ExportCounts(tables=with_tables, deleted=deleted_starts(dump))
    out.write(header_line(rules_version=rules_version, config_toml=config_toml, app_id=app,
                          source=bootstrap, ends=dump.ends, tables=with_tables, subset=subset,
                          deleted=counts.deleted))
    for r in dump.records[topics.JOURNAL]:
        lines, error = journal_lines(r.partition, r.offset, r.key, r.value)
        out.writelines(lines)
        counts.journal += len(lines)
        if error is not None:
            # Written as stored; counted here so the exporter hears of it, not only the reader.
            counts.unreadable += 1
    exported = []
    for t in OUTCOME_TOPICS:
        for r in dump.records[t]:
            if subset is not None and not subset.has_record(
                    r.key.decode("utf-8", "surrogateescape") if r.key else None, r.partition):
                continue
            out.write(outcome_line(t, r.partition, r.offset, r.key, r.value))
            exported.append(r.value)
            counts.outcomes += 1
    counts.rules_versions = stored_rules_versions(exported)
    if found is not None:
        latest: dict[bytes, Any] = {}
        for r, person in found[1]:
            latest[person] = r
        for key in sorted(latest, key=lambda k: (latest[k].partition, latest[k].offset)):
            r = latest[key]
            if r.value is None:
                continue  # deleted: a compacted changelog would not keep it either
            out.write(table_line("persons", r.partition, r.offset, key, r.value))
            counts.table += 1
            try:
                decode_ledger_record(r.value)
            except VersionError:
                counts.unreadable += 1
    out.write(end_line(counts.journal, counts.outcomes, counts.table))
    out.flush()
    return counts
