"""`mynapoint takeover --to quix|faust`, the Kafka side: move a stopped deployment's state from one
engine's changelogs to the other's (the layouts: `streams.audit.takeover`).

Steps, with every worker of the app stopped:

    check     no member in the app's consumer group; the journal exists; the state is in the
              other engine's changelogs (or nowhere yet: a deployment with no state)
    read      the source changelogs, latest value per key (as compaction keeps it), into a
              RocksDB database in a scratch directory (`clients.snapshot.Snapshot`, in the
              tables' layout), so that memory does not grow with the number of people
    write     the target engine's changelogs: deleted if they exist, created with the journal's
              partition count (compacted, as the engines make them), filled with the rows read
              back from the database
    retire    the source changelogs deleted, so that the state lives in one engine's changelogs
              only and an engine started by mistake finds none (it would start empty, and the
              check of a second takeover says where the state is)

Apache Kafka only: the local Tansu broker keeps a stopped worker in the group's members, so the
check refuses, and the other engine's workers could not join the group (their group protocol
differs from the stopped member's).

The group's committed offsets stay as they are: the new engine's workers go on where the old
ones stopped. A run that stops before `retire` is run again as a whole (the source is still
there, and `write` recreates the target). The workers of the new engine start on empty data
directories: a directory an earlier run of that engine left holds state that is no longer true.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clients.offline import (
    OfflineFailed,
    OfflineJob,
    column_family,
    made_configs,
    outgoing,
    state_topics,
    tables_in,
)
from clients.snapshot import Snapshot, StoreError
from schemas import topics
from schemas.settings import ENGINES
from streams.audit.rescale import rows_at
from streams.audit.takeover import TakeoverError, quix_rows_at

Say = Callable[[str], None]


class TakeoverFailed(OfflineFailed):
    """The takeover stopped; the message says what to do."""


@dataclass
class Summary:
    source: str = ""
    target: str = ""
    partitions: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    retired: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def render(self) -> str:
        lines = [f"took over the state from {self.source} to {self.target} "
                 f"({self.partitions} partitions) in {self.seconds:.1f} s:"]
        lines += [f"  {topic}: {n:,} rows" for topic, n in self.rows.items()]
        lines.append(f"  retired: {', '.join(self.retired) or 'nothing (there was no state)'}")
        lines.append(f"start the {self.target} workers (--engine {self.target}) with the same "
                     "--app-id, on empty data directories")
        return "\n".join(lines)


class Takeover(OfflineJob):
    command = "takeover"
    failure = TakeoverFailed

    def __init__(self, bootstrap: str, app_id: str, to_engine: str, *, say: Say,
                 timeout: float = 300.0, work_dir: Path | None = None,
                 **client_kwargs: Any) -> None:
        super().__init__(bootstrap, app_id, timeout=timeout, **client_kwargs)
        self.work_dir = work_dir
        if to_engine not in ENGINES:
            raise TakeoverFailed(f"--to must be one of {', '.join(ENGINES)}, not {to_engine!r}")
        self.target = to_engine
        self.source = next(e for e in ENGINES if e != to_engine)
        self.say = say
        self.summary = Summary(source=self.source, target=self.target)

    async def run(self) -> Summary:
        started = time.monotonic()
        await self.connect()
        try:
            await self._refuse_active_members()
            n, present = await self._check()
            try:
                scratch_dir = tempfile.TemporaryDirectory(prefix="mynapoint-takeover-",
                                                          dir=self.work_dir)
            except OSError as exc:
                raise TakeoverFailed(
                    f"cannot make a scratch directory in {self.work_dir or tempfile.gettempdir()}"
                    f" ({exc}): give --work-dir a directory this user can write to; nothing was "
                    "changed") from None
            with scratch_dir as scratch:
                rows = Snapshot.create(Path(scratch) / "state.db")
                try:
                    await self._read_state(n, present, rows)
                    await self._write(n, rows)
                finally:
                    rows.discard()
            retired = [t for t in state_topics(self.source, self.app_id).values()
                       if t in present]
            if retired:
                await self.ask(lambda: self.admin.delete_topics(retired, timeout_ms=60_000))
            self.summary.retired = retired
            self.say(f"retired {', '.join(retired) or 'nothing'}")
        finally:
            await self.close()
        self.summary.seconds = time.monotonic() - started
        return self.summary

    async def _check(self) -> tuple[int, set[str]]:
        present = set(await self.ask(self.admin.list_topics))
        if topics.JOURNAL not in present:
            raise TakeoverFailed(f"{topics.JOURNAL} does not exist on {self.bootstrap}: nothing "
                                 "to take over (start the workers of the engine you want)")
        n = (await self._partition_counts([topics.JOURNAL]))[topics.JOURNAL]
        source = set(state_topics(self.source, self.app_id).values())
        target = set(state_topics(self.target, self.app_id).values())
        if not source & present and target & present:
            raise TakeoverFailed(
                f"the state of app {self.app_id!r} is in the {self.target} workers' changelogs "
                f"({', '.join(sorted(target & present))}) and not in the {self.source} ones: it "
                f"was taken over already; start the {self.target} workers")
        self.summary.partitions = n
        self.say(f"checked: no worker of {self.app_id!r} running, {n} partitions, state in "
                 f"{', '.join(sorted(source & present)) or 'no changelog yet'}")
        return n, present

    async def _read_state(self, n: int, present: set[str], into: Snapshot) -> None:
        """The source state's rows (latest per key), into `into` in the Faust tables' layout."""
        names = {topic: name for name, topic in state_topics(self.source, self.app_id).items()
                 if topic in present}
        if not names:
            return
        counts = await self._partition_counts(list(names))
        odd = {t: c for t, c in counts.items() if c != n}
        if odd:
            raise TakeoverFailed(f"changelogs with another partition count than the journal's "
                                 f"{n}: {odd}; rescale or repair them first")

        def fold(records: list[Any]) -> None:  # one partition's, in offset order
            topic = records[0].topic
            if self.source == "quix":
                into.add_quix_rows(names[topic],
                                   ((r.key, r.value, column_family(r)) for r in records))
            else:
                into.add_rows(names[topic], ((r.key, r.value) for r in records))

        await self._read([], optional=list(names), on_records=fold)
        try:
            into.check_quix_rows()
        except TakeoverError as exc:
            raise TakeoverFailed(str(exc)) from None
        for topic, name in names.items():
            count = sum(into.row_count(t) for t in tables_in(self.source, name))
            self.say(f"read {topic}: {count:,} rows")

    async def _write(self, n: int, rows: Snapshot) -> None:
        replicas = (await self._replication([topics.JOURNAL])).get(topics.JOURNAL, 1)
        configs = made_configs(self.target, self.app_id)
        for name, topic in state_topics(self.target, self.app_id).items():
            await self._recreate(topic, n, configs[topic], replicas)
            total = sum(rows.row_count(t) for t in tables_in(self.target, name))
            placed = (quix_rows_at(name, rows.rows, n) if self.target == "quix"
                      else rows_at(name, rows.rows(name), n))
            await self._send(outgoing(topic, placed))
            self.summary.rows[topic] = total
            self.say(f"wrote {topic}: {total:,} rows")


def takeover(bootstrap: str, app_id: str, to_engine: str, *, say: Say, timeout: float = 300.0,
             work_dir: Path | None = None, **client_kwargs: Any) -> Summary:
    """Runs a takeover; raises TakeoverFailed with what to do."""
    from clients.connect import run_blocking

    try:
        return run_blocking(Takeover(bootstrap, app_id, to_engine, say=say, timeout=timeout,
                                     work_dir=work_dir, **client_kwargs).run())
    except StoreError as exc:  # only while reading: nothing was changed yet
        raise TakeoverFailed(f"{exc}: the rows read are kept there until they are written; give "
                             "--work-dir a directory with room for the state changelogs, then "
                             "run takeover again (nothing was changed)") from None
