"""`mynapoint rescale`, the Kafka side: bring every topic of an app from N to M partitions.

The pure part (where each record goes) is `streams.audit.rescale`; docs/ARCHITECTURE.md
"Rescaling" has the design, docs/RUNBOOK.md "Scaling" the procedure. Steps, in order, each
recorded in the state file when done, so that a run after a crash finishes the job instead of
doing any step twice:

    check     no member in the app's consumer group; M > N; the rules the outcomes carry
    snapshot  the group's committed offsets (in the state file), the whole journal, the
              unanswered claims and the state changelogs (latest value per key) -> the
              snapshot database beside the state file (`<state>.snapshot.db`, RocksDB,
              clients/snapshot.py: on disk, so that memory does not grow with the history;
              sealed once complete): Faust's three tables', or the Quix worker's two states'
              (taken in the tables' layout, streams.audit.takeover), whichever engine the app
              runs on
    grow      inputs and outputs to M partitions (CreatePartitions: records stay where they are)
    inputs    input records after the committed offsets that are not journaled yet, re-sent
              (keyed, with a header naming their source) to their partition at M; the ends the
              old partitions had are recorded first, and a re-run skips the records whose source
              header it finds already sent. The records to move go through the snapshot
              database too (written as read, removed once sent): a large backlog is not held
              in memory
    rebuild   journal, claims and the changelogs: deleted, created with M partitions (same
              topic configs), filled from the snapshot (the journal one entry a record, a batch
              split among its persons' partitions; the changelogs in their engine's layout);
              one topic at a time, each refilled whole when a run stopped in its middle. The
              journal at M is laid out in the snapshot database first, once
    offsets   the group's committed offsets: old input partitions at the ends recorded by
              `inputs` (the originals of moved records are never read), the journal at the
              entries the ledger had folded, claims at 0

The snapshot database holds the only copy of the journal between its deletion and its refill: keep
it and the state file until the command says it is done (they are not removed; a later run with
them says so and stops).

For the crash test only: MYNAPOINT_RESCALE_CRASH_AT=<step> (a step name above,
`inputs:half` or `rebuild:<topic>:half`) makes the process exit with status 70 right after that point.
"""

from __future__ import annotations

import itertools
import mmap
import os
import sys
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from clients.admin import topic_errors
from clients.offline import (
    OfflineFailed,
    OfflineJob,
    Outgoing,
    column_family,
    outgoing,
    state_topics,
    tables_in,
)
from clients.snapshot import JournalPlan, Snapshot, StoreError, fsync_dir
from schemas import topics
from schemas.settings import ENGINES
from schemas.topics import TABLES
from streams.audit.export import other_rules, stored_rules_versions
from streams.audit.rescale import (
    Pending,
    RescaleError,
    check_journal_partition,
    claim_partition,
    inputs_to_move,
    journaled_sources,
    rows_at,
    source_id,
)
from streams.audit.takeover import TakeoverError, quix_rows_at

STATE_VERSION = 3
SOURCE_HEADER = "mynapoint-rescale-source"
CRASH_ENV = "MYNAPOINT_RESCALE_CRASH_AT"


class RescaleFailed(OfflineFailed):
    """The rescale stopped; the message says what to do."""


def internal_topics(app_id: str, engine: str | None = "faust") -> tuple[str, ...]:
    """The topics rebuilt whole: the journal, claims, and the state changelogs of the `engine`
    the app runs on (none when no worker wrote any)."""
    changelogs = state_topics(engine, app_id).values() if engine else ()
    return (topics.JOURNAL, topics.CLAIMS, *changelogs)


def grown_topics() -> tuple[str, ...]:
    """The topics grown in place: producers write the inputs, consumers read the outputs."""
    return (*topics.INPUT_TOPICS, *topics.OUTPUT_TOPICS)


@dataclass
class Summary:
    from_partitions: int = 0
    to_partitions: int = 0
    grown: list[str] = field(default_factory=list)
    moved: int = 0
    already_moved: int = 0
    rebuilt: dict[str, int] = field(default_factory=dict)
    committed: int = 0
    resumed: bool = False
    seconds: float = 0.0

    def render(self) -> str:
        lines = [f"rescaled from {self.from_partitions} to {self.to_partitions} partitions"
                 + (" (finishing an earlier run)" if self.resumed else "") + f" in "
                 f"{self.seconds:.1f} s:",
                 f"  grown in place: {', '.join(self.grown) or 'none (already grown)'}",
                 f"  input records not yet journaled, moved to their new partition: {self.moved:,}"
                 + (f" (+{self.already_moved:,} moved by the earlier run)"
                    if self.already_moved else "")]
        for t, n in self.rebuilt.items():
            lines.append(f"  rebuilt {t}: {n:,} records")
        lines.append(f"  committed offsets set for the group: {self.committed:,} partitions")
        lines.append(f"start the workers with --partitions {self.to_partitions} on fresh data "
                     "directories")
        return "\n".join(lines)


class State:
    """The state file: the plan, what the snapshot step found (`META_KEYS`) and the steps done,
    replaced atomically at each step (msgpack); and beside it, once taken, the snapshot database
    (`snapshot_path`, clients/snapshot.py), sealed once complete.

    Versions 1 and 2 kept the snapshot's records in msgpack: version 1 inside the state file,
    version 2 in a file of its own (`legacy_snapshot_path`). Such a run is finished: `load` moves
    the records into a snapshot database, writes the state file as version 3, and removes the
    version 2 snapshot file."""

    def __init__(self, path: Path, data: dict[str, Any]):
        self.path = path
        self.data = data

    @staticmethod
    def snapshot_path(path: Path) -> Path:
        return path.with_name(path.name + ".snapshot.db")

    @staticmethod
    def legacy_snapshot_path(path: Path) -> Path:
        return path.with_name(path.name + ".snapshot")

    @classmethod
    def load(cls, path: Path) -> State | None:
        if not path.exists():
            return None
        data = _read_msgpack(path, "state file")
        if not isinstance(data, dict) or data.get("v") not in (1, 2, STATE_VERSION):
            raise RescaleFailed(f"{path} is not a state file of this version of rescale")
        state = cls(path, data)
        if data["v"] == 2 and data.get("snapshot"):
            legacy = cls.legacy_snapshot_path(path)
            snapshot = _read_msgpack(legacy, "snapshot")
            if not isinstance(snapshot, dict) or set(snapshot) != set(LEGACY_SNAPSHOT_KEYS):
                raise RescaleFailed(f"{legacy} is not the snapshot of {path}: restore the one "
                                    "the run wrote beside it")
            data.update(snapshot)
        if data["v"] != STATE_VERSION:
            state._upgrade()
        elif data.get("snapshot") and not Snapshot.sealed(cls.snapshot_path(path)):
            raise RescaleFailed(f"{cls.snapshot_path(path)}, the snapshot of {path}, is missing: "
                                "restore the one the run wrote beside it")
        return state

    def _upgrade(self) -> None:
        """A state file of version 1 or 2, its snapshot's records read into `data`: the records
        into a snapshot database, then the state file as version 3."""
        d = self.data
        taken = any(k in d for k in RECORD_KEYS)
        if taken:
            snap = Snapshot.create(self.snapshot_path(self.path))
            try:
                for p, records in sorted(d["journal"].items()):
                    snap.add_journal(int(p), ((int(o), k, v) for o, k, v in records))
                # Versions 1 and 2 kept the claims in their order, without their partitions.
                snap.add_claims(0, ((i, k, v) for i, (k, v) in enumerate(d["claims"])))
                for table, rows in d["tables"].items():
                    snap.add_rows(table, rows.items())
                snap.seal()
            except BaseException:
                snap.discard()
                raise
            snap.close()
        for key in RECORD_KEYS:
            d.pop(key, None)
        d["v"] = STATE_VERSION
        d["snapshot"] = taken
        self.save()
        self.legacy_snapshot_path(self.path).unlink(missing_ok=True)

    def save(self) -> None:
        _write_atomically(self.path, self.data)

    def done(self, step: str) -> bool:
        return step in self.data["done"]

    def mark(self, step: str) -> None:
        if step not in self.data["done"]:
            self.data["done"].append(step)
        self.save()
        crash_point(step)


#: What the snapshot step records in the state file; the records are in the snapshot database.
META_KEYS = ("engine", "committed", "configs", "replicas")
#: The records of the snapshot that versions 1 and 2 kept in msgpack.
RECORD_KEYS = ("journal", "claims", "tables")
#: The keys of a version 2 snapshot file.
LEGACY_SNAPSHOT_KEYS = META_KEYS + RECORD_KEYS


def _read_msgpack(path: Path, what: str) -> Any:
    try:
        # Decoded from the file's pages, not from a copy of its bytes in memory.
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return msgspec.msgpack.decode(m)
    except (OSError, ValueError, msgspec.DecodeError) as exc:
        raise RescaleFailed(f"cannot read the {what} {path} ({exc}): restore it from the run "
                            "that wrote it") from None


def _write_atomically(path: Path, data: dict[str, Any]) -> None:
    """Writes `data` to `path` through a temporary file, fsync'd, then renamed over it."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(msgspec.msgpack.encode(data))
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    fsync_dir(path.parent)


def crash_point(name: str) -> None:
    """Exits at `name` when MYNAPOINT_RESCALE_CRASH_AT says so (the crash test only)."""
    if os.environ.get(CRASH_ENV) == name:
        print(f"mynapoint rescale: stopping at {name} ({CRASH_ENV})", file=sys.stderr, flush=True)
        os._exit(70)


Say = Callable[[str], None]


class Rescaler(OfflineJob):
    command = "rescale"
    failure = RescaleFailed

    def __init__(self, bootstrap: str, app_id: str, to_partitions: int, rules_version: str,
                 state_path: Path, *, say: Say, timeout: float = 300.0,
                 **client_kwargs: Any):
        super().__init__(bootstrap, app_id, timeout=timeout, **client_kwargs)
        self.m = to_partitions
        self.rules_version = rules_version
        self.state_path = state_path
        self.say = say
        self.summary = Summary(to_partitions=to_partitions)
        self._snap: Snapshot | None = None

    # --- the steps -----------------------------------------------------------------------------

    async def run(self) -> Summary:
        started = time.monotonic()
        await self.connect()
        try:
            state = await self._check()
            if not state.done("snapshot"):
                await self._snapshot(state)
            if not state.done("grow"):
                await self._grow(state)
            if not state.done("inputs"):
                await self._inputs(state)
            for t in internal_topics(self.app_id, state.data.get("engine", "faust")):
                if not state.done(f"rebuild:{t}"):
                    await self._rebuild(state, t)
                else:
                    self.summary.rebuilt[t] = int(state.data["rebuilt"].get(t, 0))
            if not state.done("offsets"):
                await self._offsets(state)
        finally:
            if self._snap is not None:
                self._snap.close()
            await self.close()
        self.summary.seconds = time.monotonic() - started
        return self.summary

    async def _check(self) -> State:
        state = State.load(self.state_path)
        await self._refuse_active_members()
        counts = await self._partition_counts([topics.JOURNAL, *grown_topics()])
        if topics.JOURNAL not in counts:
            raise RescaleFailed(f"{topics.JOURNAL} does not exist on {self.bootstrap}: nothing "
                                "to rescale (start the workers with --partitions M instead)")
        if state is not None:
            d = state.data
            if d["app_id"] != self.app_id or d["to"] != self.m:
                raise RescaleFailed(
                    f"the state file {self.state_path} is of a rescale of app {d['app_id']!r} to "
                    f"{d['to']} partitions: finish that one (same --app-id, --to-partitions "
                    f"{d['to']}) or give another --state")
            if d["rules_version"] != self.rules_version:
                raise RescaleFailed(f"the state file was written under rules {d['rules_version']}"
                                    f", --config gives {self.rules_version}: give the same "
                                    "--config")
            if state.done("offsets"):
                raise RescaleFailed(f"this rescale to {self.m} partitions is already done "
                                    f"({self.state_path}): start the workers with --partitions "
                                    f"{self.m}")
            self.summary.from_partitions = d["from"]
            self.summary.resumed = True
            self.say(f"finishing the rescale of {self.state_path} from {d['from']} to {self.m} "
                     f"partitions (done: {', '.join(d['done']) or 'nothing'})")
            return state
        n = counts[topics.JOURNAL]
        if self.m <= n:
            raise RescaleFailed(f"the app has {n} partitions already: --to-partitions must be "
                                f"larger than {n} (Kafka cannot take partitions away)")
        odd = {t: c for t, c in counts.items() if c != n}
        if odd:
            raise RescaleFailed(f"topics with another partition count than the journal's {n}: "
                                f"{odd}; bring them to {n} first (or finish the rescale that "
                                "changed them, with its state file)")
        await self._check_rules()
        self.summary.from_partitions = n
        state = State(self.state_path, {"v": STATE_VERSION, "app_id": self.app_id, "from": n,
                                        "to": self.m, "rules_version": self.rules_version,
                                        "done": [], "rebuilt": {}})
        state.mark("check")
        self.say(f"checked: no worker of {self.app_id!r} running, {n} -> {self.m} partitions, "
                 f"rules {self.rules_version}")
        return state

    async def _check_rules(self) -> None:
        """The rules the latest published outcomes were decided under must be --config's: the
        rebuilt tables are the state under those rules."""
        dump = await self._read([], optional=[topics.DECISIONS, topics.GRANTS], tail=20)
        versions = stored_rules_versions(r.value for t in dump.records.values() for r in t)
        other = other_rules(versions, self.rules_version)
        if other:
            raise RescaleFailed(
                f"the latest outcomes were decided under rules {other}, --config gives "
                f"{self.rules_version}: rescale with the configuration the workers ran with "
                "(rescale first, change the rules afterwards: docs/RUNBOOK.md, \"Scaling\")")

    async def _snapshot(self, state: State) -> None:
        self.say("snapshot: reading the committed offsets, the journal, the claims and the "
                 "tables ...")
        committed = await self._committed()
        engine = await self._engine()
        internal = internal_topics(self.app_id, engine)
        configs = await self._remade_configs(engine or "faust", list(internal))
        replicas = await self._replication(list(internal))
        # Each partition's records go to the database as they are read (one partition's a call,
        # in offset order); the changelogs are folded there to their latest rows.
        snap = Snapshot.create(State.snapshot_path(self.state_path))
        try:
            journal = await self._read([topics.JOURNAL], on_records=lambda recs: snap.add_journal(
                recs[0].partition, ((r.offset, r.key, r.value) for r in recs)))
            # Refused here, before anything is changed: a journal partition whose first records
            # are gone (emptied altogether too, which its records alone would not show).
            try:
                for p, end in sorted(journal.ends.get(topics.JOURNAL, {}).items()):
                    check_journal_partition(p, journal.begins[topics.JOURNAL][p], end,
                                            committed.get(topics.JOURNAL, {}).get(p, 0))
            except RescaleError as exc:
                raise RescaleFailed(
                    f"{exc}. Nothing was changed: the app can go on at its {state.data['from']} "
                    "partitions (start its workers again; scale by workers up to that count), "
                    "and the journal should keep what is left (docs/RUNBOOK.md, \"Topic "
                    "settings\")") from None
            await self._read([topics.CLAIMS],
                             start={topics.CLAIMS: committed.get(topics.CLAIMS, {})},
                             on_records=lambda recs: snap.add_claims(
                                 recs[0].partition, ((r.offset, r.key, r.value) for r in recs)))
            names = {t: n for n, t in state_topics(engine, self.app_id).items()} if engine else {}

            def fold(recs: list[Any]) -> None:
                name = names[recs[0].topic]
                if engine == "quix":  # in the tables' layout, the one the rebuild works in
                    snap.add_quix_rows(name, ((r.key, r.value, column_family(r)) for r in recs))
                else:
                    snap.add_rows(name, ((r.key, r.value) for r in recs))

            await self._read([], optional=list(names), on_records=fold)
            snap.check_quix_rows()
            n_journal, n_claims, rows = snap.counts(TABLES)
            snap.seal()
        except BaseException:
            snap.discard()
            raise
        self._snap = snap
        d = state.data
        d["engine"] = engine
        d["committed"] = committed
        d["configs"] = configs
        d["replicas"] = replicas
        d["snapshot"] = True
        self.say(f"snapshot: {n_journal:,} journal records, {n_claims:,} unanswered claims, "
                 "table rows: " + ", ".join(f"{t} {n:,}" for t, n in rows.items()))
        state.mark("snapshot")

    async def _grow(self, state: State) -> None:
        from aiokafka.admin import NewPartitions

        counts = await self._partition_counts(list(grown_topics()))
        todo = {t: NewPartitions(self.m) for t in grown_topics() if counts.get(t, self.m) < self.m}
        if todo:
            self.say(f"grow: {len(todo)} topics to {self.m} partitions")
            response = await self.ask(
                lambda: self.admin.create_partitions(todo, timeout_ms=60_000))
            for name, code, message in topic_errors(response):
                if code not in (0, 37):  # 37: INVALID_PARTITIONS (already there, a re-run)
                    raise RescaleFailed(f"cannot add partitions to {name}: error {code} "
                                        f"{message or ''}")
            await self._wait_counts(list(todo), self.m)
        self.summary.grown = sorted(todo)
        state.mark("grow")

    async def _inputs(self, state: State) -> None:
        d = state.data
        committed = d["committed"]
        n = d["from"]
        if "inputs_base" not in d:
            # The ends of the old partitions, recorded before anything is re-sent: what lies
            # before them and after the committed offsets is what moves.
            dump = await self._read([], optional=list(topics.INPUT_TOPICS), only={
                t: range(n) for t in topics.INPUT_TOPICS}, tail=0)
            d["inputs_base"] = {t: {p: int(e) for p, e in dump.ends.get(t, {}).items()}
                                for t in topics.INPUT_TOPICS}
            state.save()
        base = d["inputs_base"]
        journaled = journaled_sources(self._snapshot_db().journal_records(),
                                      since=committed)
        # Records re-sent by an earlier run: known by their source header, after the base.
        sent_before: set[str] = set()

        def sent(recs: list[Any]) -> None:
            sent_before.update(hv.decode() for r in recs for hk, hv in r.headers or ()
                               if hk == SOURCE_HEADER)

        await self._read([], optional=list(topics.INPUT_TOPICS), start=base, on_records=sent)
        # The records after the committed offsets and before the base that the journal does not
        # hold go to the snapshot database as they are read, each under its partition at M: the
        # backlog of a deployment stopped with a large lag is not held in memory.
        snap = self._snapshot_db()
        snap.clear_inputs()
        counted = [0, 0]  # records that move, those of them moved already

        def keep(recs: list[Any]) -> None:
            t, p = recs[0].topic, recs[0].partition
            end = base.get(t, {}).get(p, 0)

            before_base = ((r.offset, r.key, r.value, list(r.headers or ()))
                           for r in recs if r.offset < end)

            def moving() -> Iterator[tuple[int, int, Pending]]:
                for q, record in inputs_to_move(t, p, before_base, journaled, self.m):
                    counted[0] += 1
                    counted[1] += source_id(t, p, record[0]) in sent_before
                    yield q, p, record

            snap.add_inputs(t, moving())

        await self._read([], optional=list(topics.INPUT_TOPICS), only={
            t: range(n) for t in topics.INPUT_TOPICS},
            start={t: committed.get(t, {}) for t in topics.INPUT_TOPICS}, on_records=keep)
        moves, already = counted
        self.summary.already_moved = already
        self.say(f"inputs: {moves:,} records sent before the growth and not yet decided "
                 f"move to their partition at {self.m}"
                 + (f" ({already:,} moved already)" if already else ""))

        def todo() -> Generator[Outgoing, None, None]:
            for t in topics.INPUT_TOPICS:
                for mv in snap.input_moves(t):
                    if mv.source_id not in sent_before:
                        yield (mv.topic, mv.to, mv.key, mv.value,
                               [*mv.headers, (SOURCE_HEADER, mv.source_id.encode())])

        records = todo()
        try:
            await self._send(itertools.islice(records, (moves - already) // 2))
            crash_point("inputs:half")
            await self._send(records)
        finally:
            records.close()  # and with it the reads of the snapshot database, on any failure
        snap.clear_inputs()  # sent: what the database held of them is of no further use
        self.summary.moved = moves - already
        state.mark("inputs")

    async def _rebuild(self, state: State, topic: str) -> None:
        d = state.data
        total, records = self._records_at(state, topic)
        self.say(f"rebuild {topic}: delete, create with {self.m} partitions, write {total:,} "
                 "records")
        await self._recreate(topic, self.m, d["configs"].get(topic, {}),
                             d["replicas"].get(topic, 1))
        batch = outgoing(topic, records)
        half = total // 2
        try:
            await self._send(itertools.islice(batch, half))
            crash_point(f"rebuild:{topic}:half")
            await self._send(batch)
        finally:
            batch.close()  # and with it the reads of the snapshot database, on any failure
            del records
        d["rebuilt"][topic] = total
        self.summary.rebuilt[topic] = total
        state.mark(f"rebuild:{topic}")

    def _records_at(self, state: State, topic: str
                    ) -> tuple[int, Iterator[tuple[int, bytes | None, bytes | None]]]:
        """How many records `topic` holds at M, and the records (partition, key, value), read
        from the snapshot database as they are sent: the journal as `_plan` laid it out; the
        claims each on its key's partition; a state changelog's rows where an M-partition
        deployment keeps them, in the layout of the engine the app runs on, with the journal
        offsets they remember moved with the entries (streams.audit.rescale.rows_at)."""
        snap = self._snapshot_db()
        plan = self._plan(state)  # before anything is deleted: it refuses what cannot be rescaled
        if topic == topics.JOURNAL:
            return plan.entries, ((q, k, v) for q in range(self.m) for k, v in snap.journal_at(q))
        if topic == topics.CLAIMS:
            return (snap.claims_count(),
                    ((claim_partition(k, self.m), k, v) for k, v in snap.claims()))
        engine = state.data.get("engine") or "faust"
        name = next(k for k, v in state_topics(engine, self.app_id).items() if v == topic)
        n = state.data["from"]
        total = sum(snap.row_count(t) for t in tables_in(engine, name))
        if engine == "faust":
            return total, rows_at(name, snap.rows(name), self.m, n=n, where=snap.where)
        return total, quix_rows_at(name, snap.rows, self.m, n=n, where=snap.where)

    def _snapshot_db(self) -> Snapshot:
        if self._snap is None:
            path = State.snapshot_path(self.state_path)
            try:
                self._snap = Snapshot.open(path)
            except (FileNotFoundError, StoreError) as exc:
                raise RescaleFailed(f"cannot open the snapshot {path} ({exc}): restore the one "
                                    f"the run wrote beside {self.state_path}") from None
        return self._snap

    def _plan(self, state: State) -> JournalPlan:
        """The journal at M, laid out in the snapshot database (the same on every run: it is
        deterministic)."""
        return self._snapshot_db().plan(
            state.data["committed"].get(topics.JOURNAL, {}), self.m)

    async def _engine(self) -> str | None:
        """The engine whose changelogs hold the app's state (None: no worker wrote any)."""
        present = set(await self.ask(self.admin.list_topics))
        found = [e for e in ENGINES if set(state_topics(e, self.app_id).values()) & present]
        if len(found) > 1:
            raise RescaleFailed(
                f"both engines' changelogs of app {self.app_id!r} exist: the state must live in "
                "one (`mynapoint takeover` moves it and deletes the other's); delete the "
                "changelogs of the engine the app does not run on, then rescale")
        return found[0] if found else None

    async def _offsets(self, state: State) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from aiokafka.structs import OffsetAndMetadata

        d = state.data
        offsets: dict[Any, Any] = {}
        for t in topics.INPUT_TOPICS:
            for p in range(self.m):
                offsets[TopicPartition(t, p)] = int(d["inputs_base"].get(t, {}).get(p, 0))
        for q, n in enumerate(self._plan(state).folded):
            offsets[TopicPartition(topics.JOURNAL, q)] = int(n)
        for q in range(self.m):
            offsets[TopicPartition(topics.CLAIMS, q)] = 0
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=self.app_id,
                                    enable_auto_commit=False, **self.client_kwargs)
        await consumer.start()
        try:
            consumer.assign(list(offsets))
            await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
        finally:
            await consumer.stop()
        self.summary.committed = len(offsets)
        self.say(f"offsets: committed for {len(offsets)} partitions of group {self.app_id!r}")
        state.mark("offsets")

def rescale(bootstrap: str, app_id: str, to_partitions: int, rules_version: str,
            state_path: Path, *, say: Say, timeout: float = 300.0,
            **client_kwargs: Any) -> Summary:
    """Runs (or finishes) a rescale; raises RescaleFailed with what to do."""
    from clients.connect import run_blocking

    r = Rescaler(bootstrap, app_id, to_partitions, rules_version, state_path, say=say,
                 timeout=timeout, **client_kwargs)
    try:
        return run_blocking(r.run())
    except (RescaleError, TakeoverError) as exc:
        raise RescaleFailed(str(exc)) from None
    except StoreError as exc:
        raise RescaleFailed(f"{exc}: the snapshot database beside the state file needs a disk "
                            "with room for it (about 4 GB per million people: docs/RUNBOOK.md, "
                            "\"Scaling\"); make room there, then run the same command again, "
                            "with the same --state") from None
