"""Every use of Faust's private internals, in one module (faust-streaming 0.15).

Faust's public API does not cover a few things the worker needs; each is reached here and nowhere
else, and tests/agents/test_faust_private.py pins each name, so a Faust upgrade that moves one
fails a test instead of a worker:

- `committed_offset(app, tp)`: the group's committed offset of a partition, which Faust keeps in
  `Consumer._committed_offset` (the ledger's memory of outcomes, the consumer-lag gauge);
  `start_offset(app, tp)`: where the group resumes it, the committed offset or, with none, the
  partition's first offset that the seek after the assignment read (each step's check that its
  sources' offsets follow on);
- `created_consumer(app)`, `created_assignor(app)`: the consumer (`App._consumer`) and the
  partition assignor, only once Faust has made them, for the metrics scrape, which must not make
  them from its own thread (see the functions);
- `active_rocksdb(table)`: the RocksDB databases of a table's active partitions,
  `Store._dbs_for_actives` (the table-size gauge reads RocksDB's own key estimate), none before
  Faust has made the assignor that store asks;
- `add_middleware(app, mw)`: an aiohttp middleware on Faust's web app, `app.web.web_app`
  (the status API's token guard);
- `quiet_worker(app, loglevel)`: a `faust.Worker` without its terminal spinner, which otherwise
  sets the root logger to DEBUG (about 14% of the CPU, ../shared/notes/PERFORMANCE.md);
- `patch_for_tansu()`: Faust's changelog recovery reads to the true end of each partition on the
  local Tansu broker, whose ListOffsets(latest) answer is short (see `clients.end_offsets`);
- `flush_before_transactional_commits(app)`: in the exactly-once mode, the app's producer is
  flushed before offsets are committed, as Faust already does in the at-least-once mode (see the
  function);
- `seek_before_resuming_streams(app)`: after a rebalance (and at start), the stream partitions are
  fetched only once they were sought to their committed offsets, so that Faust never counts
  records still waiting in an agent's buffer as acknowledged, and once the first offsets of those
  with nothing committed are known (see the function);
- `pause_fetching(app, tp, pause)`: intake's bound on held records pauses an input partition
  in aiokafka itself, on the consumer's thread (`Consumer._thread`), not with Faust's
  `pause_partitions` (see the function).
- `recover_to_the_end_in_exactly_once(app)`: in the exactly-once mode, table recovery reads each
  changelog to the end the broker reports, not to the mark of a fetch not made yet (see the
  function).
- `track_handovers(app)`, `handing_over(app, tp, offset)`: which record Faust's fetch loop is
  handing to the streams right now, so that a seek in answer to that record waits until the loop
  is done with it (see the function).
- `forget_gaps(app, tp, offset)`, `pass_over(app, tp, start, end)`: what Faust's commits may
  pass without an acknowledgement (`Consumer._gap`): not the records a step reads again, but the
  offsets it found hold no records (see the functions).
- `ack_only_what_a_stream_took(app)`: Faust's consumer records no acknowledgement of a record no
  stream took (one the pure-Python stream iterator skipped during a rebalance), so its commits
  never pass it (see the function);
- `declare_only_missing_topics(app)`: Faust asks the broker to create its topics at start even
  when they exist, which a broker without Create in its ACLs refuses (see the function);
- `name_fenced_instance_ids()`, `fenced(app)`, `is_fenced_error(error)`: Kafka's error for a
  static member whose instance id another worker took, which aiokafka does not know, and the
  error aiokafka's group coordinator holds for this worker, so that a fenced worker stops and
  says why (see the functions);
- `rejoining_assignor()`: Faust's `PartitionAssignor` (the app's setting), with which a static
  member (`--instance-id`) that comes back under another status API address takes the
  assignment the group kept for it, then has the group rebalance, instead of stopping in Faust's
  assertion on the address (see the function).

The Tansu workaround: where Faust 0.15.3 depends on end offsets
----------------------------------------------------------------
Table recovery (`faust/tables/recovery.py`, `Recovery._restart_recovery`) decides how far to read
each changelog partition from two calls on the app's consumer:

* `Recovery._build_highwaters` -> `Consumer.highwaters(*tps)` -> (consumer thread)
  `faust.transport.drivers.aiokafka.AIOKafkaConsumerThread._highwaters(partitions)` ->
  `aiokafka.AIOKafkaConsumer.end_offsets(partitions)`, i.e. ListOffsets(latest), unless the app
  runs exactly-once (then `last_stable_offset(tp)` of the last fetch). Recovery stores
  `end - 1` as the target per partition ("active_highwaters"/"standby_highwaters").
* `Recovery._build_offsets` -> `Consumer.earliest_offsets` -> `beginning_offsets()` for where to
  start (max with the offsets already in the local store).

`Recovery.need_recovery()` / `active_remaining()` compare the last changelog offset applied with
that target, and `_slurp_changelogs` ends recovery ("Worker ready") as soon as every partition has
reached it. With Tansu's short answer recovery stops before the last batch's remaining records:
the table comes back without its latest updates (seen in practice). The same under-reported
target also shortens standby recovery. Everything else Faust does with offsets comes from Fetch
responses (`Consumer.highwater(tp)`, used for monitoring and lag), which are correct.

What `patch_for_tansu()` patches
--------------------------------
Exactly one method: `AIOKafkaConsumerThread._highwaters` in
`faust.transport.drivers.aiokafka`. The replacement keeps the exactly-once branch as it was
(`last_stable_offset`, which Tansu cannot serve anyway: no transactions) and otherwise returns
`corrected_end_offsets(consumer, partitions)`: it asks ListOffsets as before (end `e`), then sends
one Fetch per partition leader, on the consumer's own client (same connections, same SASL/TLS),
from offset max(e - 1, 0) and takes the high watermark of the response as the end offset. On
Apache Kafka the result equals `end_offsets()`; if the Fetch fails for a partition, that partition
keeps the ListOffsets answer (the unpatched behaviour). Nothing in aiokafka itself is patched:
`AIOKafkaConsumer.end_offsets()` still returns Tansu's answer to any other caller.

Not addressed (documented for operators): a consumer with auto_offset_reset="latest" and no
committed offset starts at Tansu's short "latest" and so re-reads the tail of the last batch
(duplicates, not losses; Faust defaults to "earliest"). Alternatively, producing changelogs with
`producer_max_batch_size=1` avoids multi-record batches, at a large throughput cost.

Use: call `patch_for_tansu()` once before the Faust worker starts (or `patch_from_env()`, which
patches when `MYNAPOINT_TANSU_COMPAT` is 1/true/yes/on). `unpatch_for_tansu()` restores the
original. This module imports faust only inside those functions.
"""


from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from clients.end_offsets import corrected_end_offsets
from schemas.settings import ENV, is_true

log = logging.getLogger(__name__)

ENV_FLAG = ENV["tansu_compat"].var
_MARK = "__mynapoint_tansu_patch__"


def committed_offset(app: Any, tp: Any) -> int | None:
    """The consumer group's committed offset of `tp` as this worker last knew it; None if none.
    Not on Faust's ConsumerT interface; its Consumer implementation keeps it."""
    return app.consumer._committed_offset.get(tp)  # noqa: SLF001


def start_offset(app: Any, tp: Any) -> int | None:
    """Where the group resumes `tp` in this assignment: its committed offset or, when nothing is
    committed (or 0, which Faust does not tell from nothing), the partition's first offset, where
    the consumer starts it (`consumer_auto_offset_reset="earliest"`), as the seek after the
    assignment found it (`seek_before_resuming_streams`). None while not known: before that seek,
    or if the broker did not answer it."""
    committed = committed_offset(app, tp)
    if committed is not None:
        return committed
    starts = getattr(app.consumer, "_mynapoint_starts", None)
    if starts is None or starts[0] != app.consumer_generation_id:
        return None  # learnt for an earlier assignment
    offset: int | None = starts[1].get(tp)
    return offset


def handed_over(app: Any, tp: Any) -> int | None:
    """The offset of the last record of `tp` that Faust's fetch loop handed to its streams' buffers
    (`Consumer._read_offset`, set once the record is in them; after a seek, the offset sought);
    None if none since the partition was assigned. A record that aiokafka returned and that is
    past this offset is still on its way through Faust's fetch loop, which hands records over one
    at a time and waits while a stream's buffer is full."""
    offset: int | None = app.consumer._read_offset.get(tp)  # noqa: SLF001
    return offset


def handing_over(app: Any, tp: Any, offset: int) -> bool:
    """Whether Faust's fetch loop is still handing over the record of `tp` at `offset`: it gave it
    to the streams and has not asked for its next record yet (`track_handovers`). False on a
    consumer made without that."""
    return getattr(app.consumer, "_mynapoint_handing", None) == (tp, offset)


def forget_gaps(app: Any, tp: Any, offset: int) -> None:
    """Forgets the gaps Faust's fetch loop noted in `tp` from `offset` on: the partition is read
    again from there, so its records there come and are acknowledged.

    Faust's fetch loop takes a jump in a partition's offsets for a gap no record will fill
    (`Consumer._add_gap`, meant for transaction markers and compacted topics) and counts its
    offsets as acknowledged as soon as a later one is (`Consumer._new_offset`). A jump can also
    be records the consumer passed over (a seek undone, a buffer cleared): a step then seeks back
    to read them (streams/pipeline/rereads.py), and until they are handled a commit must not pass
    them, or a worker killed or rebalanced meanwhile loses them."""
    gaps = app.consumer._gap.get(tp)  # noqa: SLF001
    if gaps and gaps.end() > offset:
        gaps.chop(offset, gaps.end())


def pass_over(app: Any, tp: Any, start: int, end: int) -> None:
    """Lets Faust's commits pass offsets `start` to `end - 1` of `tp`, which a step found hold no
    records (transaction markers, aborted transactions, records removed by retention): as
    Faust's fetch loop notes a gap (`forget_gaps`)."""
    if start < end:
        gaps = app.consumer._gap[tp]  # noqa: SLF001
        gaps.addi(start, end)
        gaps.merge_overlaps()


def created_consumer(app: Any) -> Any | None:
    """The app's consumer if Faust has made it (at the app's start), else None, without making it.

    `App.consumer` makes the consumer on first use, and with it the thread that runs aiokafka,
    bound to the event loop of the thread that asked. Asked first from a metrics scrape (its own
    thread) while the worker was still starting, it was bound to the wrong loop: the worker's
    start failed ("attached to a different loop") and the process hung, alive, deciding nothing.
    Faust keeps it in `App._consumer`."""
    return getattr(app, "_consumer", None)


def created_assignor(app: Any) -> Any | None:
    """The app's partition assignor if Faust has made it, else None, without making it (it is a
    lazy `cached_property`, made on first use like the consumer, and read by the consumer)."""
    return app.assignor if type(app).assignor.is_set(app) else None


def active_rocksdb(table: Any) -> list[Any] | None:
    """The rocksdict databases of the table's active partitions on this worker, or None when the
    store is not faust-streaming's RocksDB store on rocksdict.

    The store (made by `create_app`, on the worker's thread, through `agents.tables.Changelogs`)
    finds its active partitions through the app's assignor: before Faust has made it
    (`created_assignor`) none is active, and asking would make it on the caller's thread."""
    store: Any = getattr(table, "data", None)
    actives = getattr(store, "_dbs_for_actives", None)
    if actives is None or not getattr(store, "use_rocksdict", False):
        return None
    if created_assignor(store.app) is None:
        return []
    return list(actives())


def pause_fetching(app: Any, tp: tuple[str, int], pause: bool) -> None:
    """Makes aiokafka pause fetching `tp` (`pause`), or resume it.

    Not Faust's `Consumer.pause_partitions`: that removes the partition from the live set of
    active partitions that `Consumer.getmany` filters the current fetch by, after aiokafka has
    moved past the whole fetch, so the rest of the partition's records in it would be dropped
    unread (a hole intake would have to seek back for). aiokafka's own pause returns nothing more
    of the partition and keeps its position at the last record returned; resumed, it fetches from
    there. aiokafka runs on Faust's consumer thread, whose loop owns the pause's future, so the
    change runs there (`call_soon_threadsafe` on `Consumer._thread.thread_loop`), on aiokafka's
    consumer (`AIOKafkaConsumerThread._consumer`), and only while the partition is assigned:
    a rebalance gives aiokafka fresh, unpaused partition states. The loop runs the calls in the
    order they were made, so the caller's last wish for a partition is what stays (intake
    resumes what it paused when the partition is revoked)."""
    thread = app.consumer._thread  # noqa: SLF001
    thread.thread_loop.call_soon_threadsafe(_apply_pause, thread, tp, pause)


def _apply_pause(thread: Any, tp: tuple[str, int], pause: bool) -> None:
    consumer = thread._consumer  # noqa: SLF001
    if consumer is None:
        return
    from aiokafka import TopicPartition

    partition = TopicPartition(*tp)
    if partition not in consumer.assignment():
        return
    if pause:
        consumer.pause(partition)
    else:
        consumer.resume(partition)


def add_middleware(app: Any, middleware: Any) -> None:
    """Adds an aiohttp middleware to Faust's web server (before the worker starts)."""
    app.web.web_app.middlewares.append(middleware)


def quiet_worker(app: Any, loglevel: str) -> Any:
    """A `faust.Worker` without the terminal spinner.

    At a log level of WARNING or above, Faust's worker hangs its spinner on the root logger and
    sets that logger to DEBUG, so every `logger.debug` on the hot path builds a record for the
    spinner. A service has no terminal to spin on.
    """
    import faust

    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.spinner = None
    return worker


def patch_for_tansu() -> bool:
    """Makes Faust's changelog recovery read to the true end of each partition on Tansu.

    Patches `faust.transport.drivers.aiokafka.AIOKafkaConsumerThread._highwaters` (see the module
    docstring). Idempotent; returns True if it patched now, False if already patched.
    """
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    current = AIOKafkaConsumerThread._highwaters
    if getattr(current, _MARK, False):
        return False
    original = current

    async def _highwaters(self: Any, partitions: list[Any]) -> Mapping[Any, int]:
        if self.consumer.in_transaction:
            return await original(self, partitions)
        return await corrected_end_offsets(self._ensure_consumer(), partitions)

    setattr(_highwaters, _MARK, True)
    _highwaters.__wrapped__ = original  # type: ignore[attr-defined]
    _highwaters.__doc__ = "End offsets from Fetch high watermarks (mynapoint tansu_compat)."
    AIOKafkaConsumerThread._highwaters = _highwaters  # type: ignore[method-assign]
    log.info("tansu_compat: Faust changelog recovery takes end offsets from Fetch high watermarks")
    return True


def unpatch_for_tansu() -> bool:
    """Restores Faust's original method; returns False if it was not patched."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    current = AIOKafkaConsumerThread._highwaters
    if not getattr(current, _MARK, False):
        return False
    AIOKafkaConsumerThread._highwaters = current.__wrapped__  # type: ignore[attr-defined,method-assign]
    return True


def is_patched() -> bool:
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    return bool(getattr(AIOKafkaConsumerThread._highwaters, _MARK, False))


def patch_from_env(environ: Mapping[str, str] | None = None) -> bool:
    """`patch_for_tansu()` if `$MYNAPOINT_TANSU_COMPAT` is 1/true/yes/on; returns True if the
    variable asked for the patch (it is then in place), False otherwise (nothing is done)."""
    env = os.environ if environ is None else environ
    if is_true(env.get(ENV_FLAG, "")):
        patch_for_tansu()
        return True
    return False


def flush_before_transactional_commits(app: Any) -> None:
    """Makes the exactly-once mode flush the app's producer before it commits offsets.

    In the at-least-once mode Faust flushes `app.producer` before it commits input offsets
    (`Consumer._commit_offsets`). In the exactly-once mode it commits them in the partition's
    Kafka transaction instead (`TransactionManager.commit`) and flushes nothing: whatever was sent
    outside that transaction, and is still on its way, is committed past. Every record the
    agents send (journal, claims, outcomes, dead letters; `agents.outputs.producer_send`) is
    sent that way, and Faust's own table changelog writes wait in the producer's buffer until
    published: after a SIGKILL, records whose inputs were committed could be missing. Seen:
    outcomes never published although every input had reached the journal and every claim had
    its answer (the exactly-once SIGKILL test on Apache Kafka, now and then); journal records and
    table updates were exposed the same way.

    Installs, on this app's transport (before its consumer exists), a subclass of Faust's
    `TransactionManager` (the transport's `TransactionManager` class attribute, which
    `Transport.create_transaction_manager` instantiates) whose `commit` first awaits
    `app.producer.flush()`: the buffer, the plain producer and the transactional producers.
    """
    from faust.transport.consumer import TransactionManager

    class FlushingTransactionManager(TransactionManager):
        async def commit(self, offsets: Mapping[Any, int],
                         start_new_transaction: bool = True) -> bool:
            await self.producer.flush()  # the app's producer (`Consumer.__init__`)
            return await super().commit(offsets, start_new_transaction=start_new_transaction)

    app.transport.TransactionManager = FlushingTransactionManager  # type: ignore[misc]


def seek_before_resuming_streams(app: Any) -> None:
    """Makes the consumer seek the stream partitions to their committed offsets before it fetches
    them, after every rebalance and at start.

    What Faust 0.15 does: once the tables are recovered, `Recovery._resume_streams` (and
    `Recovery.on_recovery_completed`) resume the stream partitions (`Consumer.resume_partitions`)
    and then await `Consumer.perform_seek`, which seeks them to the committed offsets and resets
    the consumer's read offsets (`Consumer._read_offset`) to those. When the tables needed
    recovery, the flow already runs, so the fetcher delivers records of the resumed partitions
    in between. `perform_seek` then moves their read offsets back, and the next record of the
    earlier fetch looks like a jump forward: `Consumer._drain_messages` takes the offsets in
    between for a gap no record will fill (`Consumer._add_gap`, meant for compacted topics and
    transaction markers) and counts them as acknowledged. They are records waiting in an agent's
    buffer. The next commit passes them, and a worker killed before it handled them loses them:
    seen as a claim request never answered (its person waited for ever) after two SIGKILLs on
    Apache Kafka; journal entries and input records are exposed the same way. With a diagnostic
    log, three of four runs of two SIGKILLs showed such a gap after a restart, of 28 to 50
    records, on every journal and claims partition.

    Installs, on this app's transport (before its consumer exists), a subclass of the
    transport's `Consumer` (the class `Transport.create_consumer` instantiates) whose
    `resume_partitions` holds back the stream partitions (those that are not a table's
    changelog) until the next `perform_seek` has sought them; changelog partitions are resumed
    at once, as before. Both places that resume stream partitions await `perform_seek` right
    after; a seek releases what was held back before it began (Faust also seeks from `getmany`
    when the flow stopped under it), whether or not it succeeded (Faust's own order, then),
    unless a new rebalance began meanwhile (its recovery resumes and seeks them again).
    Records fetched after the seek start at the committed offsets, so no gap appears and nothing
    is acknowledged before it is handled.

    Holding partitions back opens a second way to the same gap, also closed here. Faust passes its
    live set of active partitions to the fetch (`AIOKafkaConsumerThread._fetch_records` ->
    aiokafka `Fetcher.fetched_records(partitions)`), which runs later on the consumer's thread;
    aiokafka takes an empty set for "every partition". When recovery pauses the changelogs while
    the streams are held, the set is empty, the fetch returns the held partitions' records, and
    Faust's `getmany` drops them (not active) after aiokafka has moved past them: seen in the
    same diagnostic runs. The consumer thread made here fetches a copy of the set taken when the
    fetch runs, and nothing when it is empty.

    The same seek, before it releases the partitions, also reads the first offset of each stream
    partition that has nothing committed (`Consumer.earliest_offsets`, one ListOffsets request):
    Faust's commits check nothing at the head of such a partition (`Consumer._new_offset`
    commits the first run of acknowledged offsets wherever it starts), so the steps must know
    where it starts to notice records missing there (`start_offset`). Seen once in CI: the first
    2,083 records of an input partition never reached intake after a rebalance, and the group
    committed the partition to its end (docs/ARCHITECTURE.md, "Records missing at the very start
    of a partition").
    """
    from faust.types import TP

    base = app.transport.Consumer

    class SeekFirstConsumer(base):  # type: ignore[misc,valid-type]
        _mynapoint_awaiting_seek: set[Any] | None = None
        # (generation, {partition: first offset}) of the stream partitions with nothing
        # committed, read by `start_offset`.
        _mynapoint_starts: tuple[int, dict[Any, int]] | None = None

        def resume_partitions(self, tps: Any) -> None:
            tpset = set(tps)
            streams = {tp for tp in tpset if not self._is_changelog_tp(tp)}  # noqa: SLF001
            if streams:
                self._mynapoint_awaiting_seek = (self._mynapoint_awaiting_seek or set()) | streams
            super().resume_partitions(tpset - streams)

        def _new_consumer_thread(self) -> Any:
            thread = super()._new_consumer_thread()
            fetch = thread._fetch_records  # noqa: SLF001

            async def fetch_active(consumer: Any, active_partitions: Any,
                                   timeout: float | None = None,
                                   max_records: int | None = None) -> Any:
                # The set as it is now: Faust hands over its live set of active partitions.
                wanted = frozenset(active_partitions)
                if not wanted:
                    return {}  # aiokafka would take an empty set for "every partition"
                return await fetch(consumer, wanted, timeout=timeout, max_records=max_records)

            thread._fetch_records = fetch_active  # noqa: SLF001
            return thread

        async def perform_seek(self) -> None:
            # Only what was held back before this seek began is sought by it; after a new
            # rebalance meanwhile, that rebalance's recovery resumes (and seeks) them itself.
            held, self._mynapoint_awaiting_seek = self._mynapoint_awaiting_seek, None
            generation = self.app.consumer_generation_id
            try:
                await super().perform_seek()
                await self._mynapoint_learn_starts(generation)
            finally:
                if held and self.app.consumer_generation_id == generation:
                    super().resume_partitions(held & set(self.assignment()))

        async def _mynapoint_learn_starts(self, generation: int) -> None:
            # Before the partitions are resumed: their first records find `start_offset` known.
            unknown = [tp for tp in self.assignment()
                       if not self._is_changelog_tp(tp)  # noqa: SLF001
                       and committed_offset(self.app, tp) is None]
            starts: dict[Any, int] = {}
            if unknown:
                try:
                    found = await self.earliest_offsets(*unknown)
                except Exception as exc:  # noqa: BLE001 - the steps then start at a first record
                    log.warning("the first offsets of %d partitions with nothing committed could "
                                "not be read (%r): a record missing at the very start of one of "
                                "them goes unnoticed until the next rebalance", len(unknown), exc)
                else:
                    starts = {TP(tp.topic, tp.partition): offset for tp, offset in found.items()}
            if self.app.consumer_generation_id == generation:
                self._mynapoint_starts = (generation, starts)

    app.transport.Consumer = SeekFirstConsumer


def recover_to_the_end_in_exactly_once(app: Any) -> None:
    """Makes the exactly-once mode's table recovery read each changelog to its end.

    What Faust 0.15 does: recovery takes each changelog partition's end from
    `AIOKafkaConsumerThread._highwaters`, which in the exactly-once mode answers
    `last_stable_offset(tp)`, the mark of the consumer's last fetch of that partition: None
    (then -1) before one, and recovery runs before the changelogs are fetched. So an
    exactly-once worker recovered nothing: after its local stores were lost (a new machine, a
    deleted data directory) it started with empty tables, its journal offsets already committed,
    and decided on (seen on Apache Kafka: "Highwater ... -1" for every partition, then "Recovery
    complete" at once). It also rejects a store that records where it is ("The persisted offset
    ... is higher than the last offset in that topic"), so `agents.tables.Changelogs` could not
    record one in that mode.

    Installs, on this app's transport (before its consumer exists), a subclass of the transport's
    `Consumer` whose consumer thread answers `_highwaters` in that mode as in the other:
    ListOffsets(latest), which for this read-committed consumer is the last stable offset the
    broker holds now (corrected on Tansu as `patch_for_tansu` does; Tansu has no transactions).
    """
    base = app.transport.Consumer

    class EndOffsetsConsumer(base):  # type: ignore[misc,valid-type]
        def _new_consumer_thread(self) -> Any:
            thread = super()._new_consumer_thread()
            highwaters = thread._highwaters  # noqa: SLF001

            async def to_the_end(partitions: list[Any]) -> Mapping[Any, int]:
                if not thread.consumer.in_transaction:
                    return await highwaters(partitions)
                consumer = thread._ensure_consumer()  # noqa: SLF001
                if is_patched():
                    return await corrected_end_offsets(consumer, partitions)
                ends: Mapping[Any, int] = await consumer.end_offsets(partitions)
                return ends

            thread._highwaters = to_the_end  # noqa: SLF001
            return thread

    app.transport.Consumer = EndOffsetsConsumer


def track_handovers(app: Any) -> None:
    """Lets a seek wait until Faust's fetch loop is done with the record that asked for it.

    What Faust 0.15 does: `Consumer._drain_messages` gives each record to the streams
    (`callback`, awaited with other futures, so the stream's agent runs meanwhile) and only then
    marks it read (`_read_offset[tp] = offset`). `Consumer.seek` sets `_read_offset` to the
    offset sought. An agent that seeks in answer to the record it was just given therefore sees
    its seek undone: the loop marks that record read after it, drops the records it was sought
    back to as already read (offsets below the read offset), and hands over that one record
    again. A step that checks the continuity of its offsets (`streams.core.align.Continuity`)
    then sees the same hole after each read from its start, and after three takes it for a real
    one (transaction markers): seen on Apache Kafka, 113 journal records of one partition
    passed over that way and never decided.

    Installs, on this app's transport (before its consumer exists), a subclass of the
    transport's `Consumer` whose `getmany` (the iterator the fetch loop draws its records from)
    records the record it last yielded (`_mynapoint_handing`, read by `handing_over`) until the
    loop asks for the next one, which it does once it has marked that one read."""
    base = app.transport.Consumer

    class HandoverConsumer(base):  # type: ignore[misc,valid-type]
        _mynapoint_handing: tuple[Any, int] | None = None

        async def getmany(self, timeout: float) -> Any:
            try:
                async for tp, message in super().getmany(timeout):
                    self._mynapoint_handing = (tp, message.offset)
                    yield tp, message
            finally:
                self._mynapoint_handing = None

    app.transport.Consumer = HandoverConsumer


def declare_only_missing_topics(app: Any) -> None:
    """Lets Faust declare its topics without asking the broker to create those that exist, so
    that a worker runs where its ACLs allow no Create, once its topics are made.

    What Faust 0.15 does: each topic it uses (its leader topic, the tables' changelogs, the
    agents' topics) is declared at start through the app's producer, whose transport skips the
    CreateTopics request of a topic in the producer client's metadata and sends it otherwise,
    then refreshes that metadata (its #499, on which its table router depends). But aiokafka's
    client starts with the metadata of no topic (`bootstrap` asks for none), so the first
    declaration always sent CreateTopics, and a broker that allows no Create refuses it before it
    looks whether the topic exists: the worker stopped with `TopicAuthorizationFailedError`
    (seen on Apache Kafka with a principal allowed everything but Create).

    Installs, on this app's transport (before its producer exists), a subclass of the transport's
    `Producer` whose `create_topic` first looks the topic up in the metadata of every topic
    (`fetch_all_metadata`, which names none, so no broker creates one on a lookup) when the
    client does not know it; a topic that exists is then not created, and the client's metadata
    is refreshed as after Faust's own declaration. A missing topic is declared as before."""
    base = app.transport.Producer

    class DeclaringProducer(base):  # type: ignore[misc,valid-type]
        async def create_topic(self, topic: str, partitions: int, replication: int,
                               **kwargs: Any) -> None:
            client = self._ensure_producer().client
            if (self.app.conf.topic_allow_declare
                    and topic not in client.cluster.topics()
                    and topic in (await client.fetch_all_metadata()).topics()):
                await client.force_metadata_update()
                return
            await super().create_topic(topic, partitions, replication, **kwargs)

    app.transport.Producer = DeclaringProducer


#: Kafka's FENCED_INSTANCE_ID: the broker gave this static member's instance id to another
#: consumer that joined with it.
FENCED_INSTANCE_ID = 82


def name_fenced_instance_ids() -> type:
    """Gives Kafka's error 82 (FENCED_INSTANCE_ID) a class in aiokafka, which has none: it reads it
    as `UnknownError`, so its logs said "[Error -1] UnknownError" and nothing could tell a fenced
    member from any other error. Registers `FencedInstanceIdError` in `aiokafka.errors.kafka_errors`
    (what `aiokafka.errors.for_code` reads), unless aiokafka has a class for 82; returns it."""
    from aiokafka import errors

    known: type | None = errors.kafka_errors.get(FENCED_INSTANCE_ID)
    if known is not None:
        return known

    class FencedInstanceIdError(errors.BrokerResponseError):
        errno = FENCED_INSTANCE_ID
        message = "FENCED_INSTANCE_ID"
        description = ("The broker rejected this static member because another consumer joined "
                       "the group with the same group.instance.id")

    errors.kafka_errors[FENCED_INSTANCE_ID] = FencedInstanceIdError
    return FencedInstanceIdError


def fenced(app: Any) -> BaseException | None:
    """The error with which the broker fenced this worker out of its group, if aiokafka's group
    coordinator is holding one for it, else None.

    What aiokafka 0.12 does with it: a JoinGroup, SyncGroup or Heartbeat answered with error 82
    raises `KafkaError(repr(error))` in its coordination loop, which hands it to the user
    (`GroupCoordinator._push_error_to_user`: kept in `_pending_exception` until a fetch raises
    it) and waits, minutes at most, before it joins again. Faust raises nothing meanwhile: seen on
    Apache Kafka, a second worker started with the first one's instance id stayed alive, in table
    recovery for ever, deciding nothing."""
    consumer = created_consumer(app)
    thread = getattr(consumer, "_thread", None)
    client = getattr(thread, "_consumer", None)
    coordinator = getattr(client, "_coordinator", None)
    error: BaseException | None = getattr(coordinator, "_pending_exception", None)
    return error if error is not None and is_fenced_error(error) else None


def is_fenced_error(error: BaseException) -> bool:
    """Whether `error` is the broker's fencing of this static member, as aiokafka hands it on:
    wrapped in a `KafkaError` of its repr, so it is found by its class name."""
    return name_fenced_instance_ids().__name__ in str(error)


def rejoining_assignor() -> Any:
    """Faust's partition assignor, with which a static member that comes back under another status
    API address rebalances the group (the app's `PartitionAssignor` setting).

    What Faust 0.15 does: each member's assignment carries the member's status API address (its
    `canonical_url`), and `PartitionAssignor.on_assignment` asserts that it is the worker's own.
    A static member (`--instance-id`) restarted within the session timeout is handed the
    assignment the broker kept, made for the address it had before: when that address changed
    (another port, a new pod address), the assertion failed inside aiokafka's coordinator, which
    then stopped, and the worker hung, alive, deciding nothing (seen on Apache Kafka).

    A subclass of Faust's `PartitionAssignor` that takes such an assignment as it is (Faust's
    own `on_assignment`, the old address standing in for the assertion) and asks the group
    coordinator to rejoin: the JoinGroup that follows
    carries the new address and the assignment now held, which differ from the member's stored
    metadata, so the broker rebalances the group, and every worker learns the new address (the
    status API routes by it). A restart under the same address rebalances nothing.
    """
    from faust.assignor import PartitionAssignor
    from faust.assignor.client_assignment import ClientMetadata

    class RejoiningAssignor(PartitionAssignor):  # type: ignore[misc]
        _kept_url: str | None = None

        @property
        def _url(self) -> Any:
            return self._kept_url if self._kept_url is not None else super()._url

        def on_assignment(self, assignment: Any) -> None:
            kept = ClientMetadata.loads(self._decompress(assignment.user_data)).url
            if kept == str(self.app.conf.canonical_url):
                super().on_assignment(assignment)
                return
            log.warning("the group kept this worker's partitions for it under the address %s; "
                        "it now serves %s: rebalancing the group so that the others learn it",
                        kept, self.app.conf.canonical_url)
            self._kept_url = kept
            try:
                super().on_assignment(assignment)
            finally:
                self._kept_url = None
            consumer: Any = self.app.consumer
            consumer._thread._ensure_consumer()._coordinator.request_rejoin()  # noqa: SLF001

    return RejoiningAssignor


def ack_only_what_a_stream_took(app: Any) -> None:
    """Keeps Faust's commits from passing records that no stream took.

    What Faust 0.15 does: the pure-Python stream iterator (`Stream._py_aiter`, used when Faust's
    Cython extension is not built) skips a record fetched before a rebalance (its
    `generation_id` is not the consumer's any more, or flow control is off while the rebalance
    runs), and acknowledges it, also in a `noack` stream, before the stream has tracked it. The
    consumer counts that acknowledgement like any other (`Consumer.ack`), so a partition that
    stays with the worker across the rebalance would be committed past every record skipped
    that way. The Cython iterator (`faust._cython.streams.StreamIterator`, built in this
    installation) returns no event for a skipped record and acknowledges none, and it
    acknowledges the records it took without calling `Consumer.ack`: this guard covers the
    pure-Python path only.

    It was written for a CI failure of the failover test on Apache Kafka (the first 2,083 records
    of payments/2 committed without ever reaching intake), but that run used the Cython iterator,
    which does not acknowledge skipped records: that failure's cause was another one, closed by
    `start_offset` (docs/ARCHITECTURE.md, "Records missing at the very start of a partition").

    Installs, on this app's transport (before its consumer exists), a subclass of the transport's
    `Consumer` that records no acknowledgement of a record no stream has tracked: a record of a
    topic that streams track (every topic our agents read) is tracked as soon as a stream takes
    it, before any agent sees it. Such a skipped record is then read again after the rebalance,
    from the committed offset (`seek_before_resuming_streams`).
    """
    base = app.transport.Consumer

    class TakenOnlyConsumer(base):  # type: ignore[misc,valid-type]
        def ack(self, message: Any) -> bool:
            if not message.tracked:
                return False
            acked: bool = super().ack(message)
            return acked

    app.transport.Consumer = TakenOnlyConsumer
