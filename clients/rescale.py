"""`mynapoint rescale`, the Kafka side: bring every topic of an app from N to M partitions.

The pure part (where each record goes) is `streams.audit.rescale`; docs/ARCHITECTURE.md
"Rescaling" has the design, docs/RUNBOOK.md "Scaling" the procedure. Steps, in order, each
recorded in the state file when done, so that a run after a crash finishes the job instead of
doing any step twice:

    check     no member in the app's consumer group; M > N; the rules the outcomes carry
    snapshot  the group's committed offsets, the whole journal, the unanswered claims and the
              state changelogs (latest value per key) -> the snapshot file beside the state
              file (`<state>.snapshot`, fsync'd, written once): Faust's
              three tables', or the Quix worker's two states' (taken in the tables' layout,
              streams.audit.takeover), whichever engine the app runs on
    grow      inputs and outputs to M partitions (CreatePartitions: records stay where they are)
    inputs    input records after the committed offsets that are not journaled yet, re-sent
              (keyed, with a header naming their source) to their partition at M; the ends the
              old partitions had are recorded first, and a re-run skips the records whose source
              header it finds already sent
    rebuild   journal, claims and the changelogs: deleted, created with M partitions (same
              topic configs), filled from the snapshot (the journal one entry a record, a batch
              split among its persons' partitions; the changelogs in their engine's layout);
              one topic at a time, each refilled whole when a run stopped in its middle
    offsets   the group's committed offsets: old input partitions at the ends recorded by
              `inputs` (the originals of moved records are never read), the journal at the
              entries the ledger had folded, claims at 0

The snapshot file holds the only copy of the journal between its deletion and its refill: keep it
and the state file until the command says it is done (they are not removed; a later run with them
says so and stops).

For the crash test only: MYNAPOINT_RESCALE_CRASH_AT=<step> (a step name above, or
`rebuild:<topic>:half`) makes the process exit with status 70 right after that point.
"""

from __future__ import annotations

import mmap
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from clients.admin import topic_errors
from clients.offline import (
    OfflineFailed,
    OfflineJob,
    Outgoing,
    state_headers,
    state_topics,
)
from schemas import topics
from schemas.settings import ENGINES
from schemas.topics import TABLES
from streams.audit.export import other_rules, stored_rules_versions
from streams.audit.rescale import (
    JournalAt,
    Record,
    RescaleError,
    claims_at,
    input_moves,
    journal_at,
    journaled_sources,
    table_at,
)
from streams.audit.takeover import (
    TakeoverError,
    faust_tables,
    to_quix,
)

STATE_VERSION = 2
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
    """The state file: the plan and the steps done, replaced atomically at each step; and beside
    it, once taken, the snapshot (`snapshot_path`), written once (msgpack, both).

    Version 1 kept the snapshot inside the state file, rewritten whole at every step; such a file
    is read as it is, and the next save writes it as version 2 (the snapshot first)."""

    def __init__(self, path: Path, data: dict[str, Any]):
        self.path = path
        self.data = data
        self._snapshot_saved = False

    @staticmethod
    def snapshot_path(path: Path) -> Path:
        return path.with_name(path.name + ".snapshot")

    @classmethod
    def load(cls, path: Path) -> State | None:
        if not path.exists():
            return None
        data = _read_msgpack(path, "state file")
        if not isinstance(data, dict) or data.get("v") not in (1, STATE_VERSION):
            raise RescaleFailed(f"{path} is not a state file of this version of rescale")
        state = cls(path, data)
        if data["v"] == 1:  # the snapshot inline: upcast, written apart at the next save
            data["v"] = STATE_VERSION
            data["snapshot"] = any(k in data for k in SNAPSHOT_KEYS)
        elif data.get("snapshot"):
            snapshot = _read_msgpack(cls.snapshot_path(path), "snapshot")
            if not isinstance(snapshot, dict) or set(snapshot) != set(SNAPSHOT_KEYS):
                raise RescaleFailed(f"{cls.snapshot_path(path)} is not the snapshot of {path}: "
                                    "restore the one the run wrote beside it")
            data.update(snapshot)
            state._snapshot_saved = True
        return state

    def save(self) -> None:
        progress = {k: v for k, v in self.data.items() if k not in SNAPSHOT_KEYS}
        if any(k in self.data for k in SNAPSHOT_KEYS):
            progress["snapshot"] = True
            if not self._snapshot_saved:
                # Taken once and never changed: written before the file that says it is there.
                _write_atomically(self.snapshot_path(self.path),
                                  {k: self.data.get(k) for k in SNAPSHOT_KEYS})
                self._snapshot_saved = True
        _write_atomically(self.path, progress)

    def done(self, step: str) -> bool:
        return step in self.data["done"]

    def mark(self, step: str) -> None:
        if step not in self.data["done"]:
            self.data["done"].append(step)
        self.save()
        crash_point(step)


#: What the snapshot step reads, kept in the snapshot file: the rebuild's source.
SNAPSHOT_KEYS = ("engine", "committed", "configs", "replicas", "journal", "claims", "tables")


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
        write_msgpack(f, data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    dirfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)


_ENCODE = msgspec.msgpack.Encoder().encode


def _header(n: int, fix: int, b16: bytes, b32: bytes) -> bytes:
    if n <= 15:
        return bytes((fix | n,))
    return b16 + n.to_bytes(2, "big") if n <= 0xFFFF else b32 + n.to_bytes(4, "big")


def write_msgpack(f: Any, obj: Any, depth: int = 3) -> None:
    """Writes `msgspec.msgpack.encode(obj)` to `f`, byte for byte, without making it whole in
    memory: the maps and arrays of the first `depth` levels are written a header, then an
    element at a time (the snapshot's journal, one partition's list a time; the tables, a row a
    time)."""
    if depth > 0 and type(obj) is dict:
        f.write(_header(len(obj), 0x80, b"\xde", b"\xdf"))
        for key, value in obj.items():
            f.write(_ENCODE(key))
            write_msgpack(f, value, depth - 1)
    elif depth > 0 and type(obj) is list:
        f.write(_header(len(obj), 0x90, b"\xdc", b"\xdd"))
        for value in obj:
            write_msgpack(f, value, depth - 1)
    else:
        f.write(_ENCODE(obj))


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
        self._journal_plan: JournalAt | None = None

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
        # Each record is kept as the tuple the state file stores as soon as it is read, and each
        # changelog folded to its latest rows: never all of aiokafka's records at once.
        journal: dict[int, list[Any]] = {}
        await self._read([topics.JOURNAL], on_records=lambda recs: journal.setdefault(
            recs[0].partition, []).extend((r.offset, r.key, r.value) for r in recs))
        claims: dict[int, list[Any]] = {}
        await self._read([topics.CLAIMS],
                         start={topics.CLAIMS: committed.get(topics.CLAIMS, {})},
                         on_records=lambda recs: claims.setdefault(recs[0].partition, []).extend(
                             (r.key, r.value) for r in recs))
        changelogs = state_topics(engine, self.app_id) if engine else {}
        rows = await self._read_state_rows(engine or "faust", changelogs)
        if engine == "quix":
            rows = faust_tables(rows)  # in the tables' layout, the one the rebuild works in
        d = state.data
        d["engine"] = engine
        d["committed"] = committed
        d["configs"] = configs
        d["replicas"] = replicas
        d["journal"] = {p: journal[p] for p in sorted(journal)}
        d["claims"] = [c for p in sorted(claims) for c in claims[p]]
        d["tables"] = {t: rows.get(t, {}) for t in TABLES}
        n_journal = sum(len(v) for v in d["journal"].values())
        self.say(f"snapshot: {n_journal:,} journal records, {len(d['claims']):,} unanswered "
                 "claims, table rows: " + ", ".join(f"{t} {len(v):,}" for t, v in
                                                    d["tables"].items()))
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
        journaled = journaled_sources(d["journal"], since=committed)
        pending_dump = await self._read([], optional=list(topics.INPUT_TOPICS), only={
            t: range(n) for t in topics.INPUT_TOPICS},
            start={t: committed.get(t, {}) for t in topics.INPUT_TOPICS})
        # Records re-sent by an earlier run: known by their source header, after the base.
        after = await self._read([], optional=list(topics.INPUT_TOPICS), start=base)
        sent_before = set()
        for recs in after.records.values():
            for r in recs:
                for hk, hv in r.headers or ():
                    if hk == SOURCE_HEADER:
                        sent_before.add(hv.decode())
        moves = []
        for t in topics.INPUT_TOPICS:
            pending: dict[int, list[Any]] = {}
            for r in pending_dump.records.get(t, []):
                if r.offset < base.get(t, {}).get(r.partition, 0):
                    pending.setdefault(r.partition, []).append(
                        (r.offset, r.key, r.value, list(r.headers or ())))
            by_target = input_moves(t, pending, journaled, self.m)
            for q in sorted(by_target):
                moves.extend(by_target[q])
        todo = [mv for mv in moves if mv.source_id not in sent_before]
        self.summary.already_moved = len(moves) - len(todo)
        self.say(f"inputs: {len(moves):,} records sent before the growth and not yet decided "
                 f"move to their partition at {self.m}"
                 + (f" ({len(moves) - len(todo):,} moved already)" if len(todo) < len(moves)
                    else ""))
        await self._send([(mv.topic, mv.to, mv.key, mv.value,
                           [*mv.headers, (SOURCE_HEADER, mv.source_id.encode())]) for mv in todo])
        self.summary.moved = len(todo)
        state.mark("inputs")

    async def _rebuild(self, state: State, topic: str) -> None:
        d = state.data
        at = self._journal_at(d)
        if topic == topics.JOURNAL:
            records = at.partitions
        elif topic == topics.CLAIMS:
            records = claims_at(d["claims"], self.m)
        else:
            records = self._changelog_at(d, topic, at)
        total = sum(len(r) for r in records)
        self.say(f"rebuild {topic}: delete, create with {self.m} partitions, write {total:,} "
                 "records")
        await self._recreate(topic, self.m, d["configs"].get(topic, {}),
                             d["replicas"].get(topic, 1))
        headers = state_headers(topic)
        batch: list[Outgoing] = [(topic, q, k, v, headers) for q, recs in enumerate(records)
                                 for k, v in recs]
        half = len(batch) // 2
        await self._send(batch[:half])
        crash_point(f"rebuild:{topic}:half")
        await self._send(batch[half:])
        d["rebuilt"][topic] = total
        self.summary.rebuilt[topic] = total
        state.mark(f"rebuild:{topic}")

    def _changelog_at(self, d: dict[str, Any], topic: str, at: JournalAt) -> list[list[Record]]:
        """A state changelog at M: the tables' rows where an M-partition deployment keeps them,
        in the layout of the engine the app runs on (streams.audit.takeover)."""
        engine = d.get("engine") or "faust"
        name = next(k for k, v in state_topics(engine, self.app_id).items() if v == topic)
        if engine == "faust":
            return table_at(name, d["tables"][name], self.m, n=d["from"], moved=at.moved)
        return to_quix(d["tables"], self.m, n=d["from"], moved=at.moved)[name]

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

    def _journal_at(self, d: dict[str, Any]) -> JournalAt:
        """The rebuilt journal, from the snapshot (the same on every run: it is deterministic)."""
        if self._journal_plan is None:
            self._journal_plan = journal_at(
                {int(p): [tuple(r) for r in recs] for p, recs in d["journal"].items()},
                d["committed"].get(topics.JOURNAL, {}), self.m)
        return self._journal_plan

    async def _offsets(self, state: State) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from aiokafka.structs import OffsetAndMetadata

        d = state.data
        offsets: dict[Any, Any] = {}
        for t in topics.INPUT_TOPICS:
            for p in range(self.m):
                offsets[TopicPartition(t, p)] = int(d["inputs_base"].get(t, {}).get(p, 0))
        for q, n in enumerate(self._journal_at(d).folded):
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
