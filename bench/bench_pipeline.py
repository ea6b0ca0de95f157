"""End-to-end throughput of the live pipeline against a bare aiokafka relay, in the same run.

Not a test (no thresholds): a measurement, printed and optionally recorded in docs/BENCHMARKS.md.

Both sides get the same pre-produced input (a generated history on the six input topics, keyed by
person_id, on a fresh local Tansu broker) and make the same number of hops:

- baseline: a bare aiokafka relay in two processes: inputs -> mid topic -> output topic, batched
  sends (the notes' "bare aiokafka relay, two processes"), over the history ten times over;
- Faust relay: the same two hops as two Faust workers of one agent each (raw bytes, no table, the
  worker's own tuning `agents.settings.TUNING`): what the framework alone costs for these hops, so the
  ceiling of any pipeline made of Faust agents;
- pipeline: `mynapoint worker` (intake -> journal -> ledger -> outcomes, with RocksDB tables and
  changelogs, event-time alignment and claims), with one worker and with two (`--workers`; the
  relay runs two processes on the machine's cores, so two workers is the like-for-like figure);
- skeleton (`--skeleton WRITES ...`): one Faust worker sending only the records the pipeline's
  design sends per event (`SKELETON`), no rules: the ceiling of any pipeline of this design;
  `WRITES/N` puts up to N entries in one journal record, what a journal batched per release
  would send.

The clock runs from the first output record to the last one, so start-up and group joins are
excluded on both sides. Usage: .venv/bin/python bench/bench_pipeline.py [--people N] [--record]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clients.admin import ensure_topics  # noqa: E402
from clients.connect import free_port, run_blocking  # noqa: E402
from clients.history import read_topics  # noqa: E402
from clients.produce import produce_lines  # noqa: E402
from devtools.brokers import make_broker  # noqa: E402
from devtools.demo import generate  # noqa: E402
from schemas import topics  # noqa: E402
from schemas.codec import BadInput, decode_event  # noqa: E402
from streams.core.versions import journal_entries  # noqa: E402

MID, OUT = "bench.relay.mid", "bench.relay.out"
#: The topics a worker writes, made before it starts.
WORKER_TOPICS = topics.OUTPUT_TOPICS + (topics.JOURNAL, topics.CLAIMS)
TABLE_END = "<!-- bench:pipeline:end -->"
#: A run shorter than this, first to last output record, measures fetch batching, not throughput.
MIN_SECONDS = 1.0
#: The bare relay gets the history this many times over, so that its run lasts long enough.
RELAY_REPEAT = 10

RELAY = r'''
import asyncio, sys
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
async def main(bootstrap, sources, target, group):
    c = AIOKafkaConsumer(*sources.split(","), bootstrap_servers=bootstrap, group_id=group,
                         auto_offset_reset="earliest", max_poll_records=5000,
                         fetch_max_bytes=4 << 20)
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=10, max_batch_size=256 << 10)
    await c.start(); await p.start()
    try:
        while True:
            batch = await c.getmany(timeout_ms=500)
            futs = [await p.send(target, key=r.key, value=r.value)
                    for recs in batch.values() for r in recs]
            if futs:
                await asyncio.gather(*futs)
                await c.commit()
    finally:
        await p.stop(); await c.stop()
asyncio.run(main(*sys.argv[1:]))
'''


FAUST_RELAY = r'''
import sys
import faust
from agents.settings import TUNING
bootstrap, sources, target, app_id, web_port = sys.argv[1:]
app = faust.App(app_id, broker=f"kafka://{bootstrap}", store="memory://", web_port=int(web_port),
                web_host="127.0.0.1", web_bind="127.0.0.1", topic_partitions=4,
                topic_replication_factor=1, consumer_auto_offset_reset="earliest", **TUNING)
raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
source = app.topic(*sources.split(","), **raw)
out = app.topic(target, **raw)
@app.agent(source, name="relay")
async def relay(stream):
    async for event in stream.events():
        await out.send(key=event.key, value=event.value)
from agents.faust_private import quiet_worker
quiet_worker(app, "info").execute_from_commandline()
'''


#: The records the pipeline's design sends through Faust per input event, and nothing else: one
#: Faust worker whose intake agent sends each input record to the journal and whose ledger agent,
#: for each journal record, writes `table_writes` RocksDB table values (each changelogged) and
#: sends 1.4 outcome records (a decision, plus a second record for two events in five), all
#: through the producer as the worker sends. No decoding, no rules, no alignment, no claims.
#: With "WRITES/N" the journal carries up to N entries a record, grouped by partition (what a
#: journal batched per release would send), and the ledger agent handles each entry as above.
SKELETON = r'''
import sys
import faust
from agents.faust_private import quiet_worker
from agents.settings import TUNING
bootstrap, sources, journal, decisions, others, app_id, web_port, data_dir, writes, per = sys.argv[1:]
per = int(per)  # journal entries a record, at most
app = faust.App(app_id, broker=f"kafka://{bootstrap}", store="rocksdb://", datadir=data_dir,
                web_port=int(web_port), web_host="127.0.0.1", web_bind="127.0.0.1",
                topic_partitions=4, topic_replication_factor=1,
                consumer_auto_offset_reset="earliest", stream_wait_empty=False, **TUNING)
raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
inputs = app.topic(*sources.split(","), **raw)
entries = app.topic(journal, partitions=4, **raw)
from agents.app import raw_table
direct = writes.endswith("direct")
tables = [raw_table(app, f"skeleton-{i}", 4) for i in range(int(writes.removesuffix("direct")))]
send = app.producer.send
import msgspec
pack, unpack = msgspec.msgpack.encode, msgspec.msgpack.Decoder(list[tuple[bytes, bytes]]).decode
@app.agent(inputs, name="intake")
async def intake(stream):
    if per == 1:
        async for event in stream.events():
            await send(journal, event.key, event.value, None, None, None)
        return
    # Up to `per` entries in one journal record, by partition (the inputs and the journal are
    # keyed and partitioned alike), as a release's entries would be.
    async for events in stream.take_events(per, within=0.05):
        parts = {}
        for event in events:
            parts.setdefault(event.message.partition, []).append((event.key, event.value))
        for partition, batch in parts.items():
            await send(journal, batch[0][0], pack(batch), partition, None, None)
@app.agent(entries, name="ledger")
async def ledger(stream):
    n = 0
    async for event in stream.events():
        partition = event.message.partition
        batch = ((event.key, event.value),) if per == 1 else unpack(event.value)
        for key, value in batch:
            for table in tables:
                if direct:  # the store and the changelog written straight, not through the table
                    table.data[key] = value
                    await send(table.changelog_topic.get_topic_name(), key, value, partition,
                               None, None)
                else:
                    table[key] = value
            await send(decisions, key, value, None, None, None)
            n += 1
            if n % 5 < 2:
                await send(others, key, value, None, None, None)
quiet_worker(app, "warning").execute_from_commandline()
'''


def _cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time used so far by the processes `pids` (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


@dataclass(frozen=True)
class Run:
    """One measured run: events/s, and the CPU its processes used over the same interval."""

    rate: float
    cpu_us: float  # CPU microseconds per event, all the run's processes together
    cores: float  # CPU seconds per second of the interval: how many cores they kept busy
    #: Seconds from the first output record to the 10%-th and the 90%-th of them, and to the
    #: last: how evenly the run went (a slow start shows in the first, a slow tail in the last).
    shape: tuple[float, float, float] = (0.0, 0.0, 0.0)
    #: The largest peak resident memory of the run's processes (VmHWM, MB).
    peak_mb: float = 0.0
    #: The pipeline's journal at the end: (records, entries); None when not counted.
    journal: tuple[int, int] | None = None

    def usage(self) -> str:
        at10, at90, end = self.shape
        return (f"{self.cpu_us:.0f} us of CPU an event, {self.cores:.2f} cores busy; 10% of the "
                f"outputs by {at10:.1f} s, 90% by {at90:.1f} s, all by {end:.1f} s; peak memory "
                f"of a process {self.peak_mb:,.0f} MB" + self._journal())

    def _journal(self) -> str:
        if self.journal is None:
            return ""
        records, entries = self.journal
        return (f"; journal: {entries:,} entries in {records:,} records "
                f"({entries / max(records, 1):.2f} a record)")


async def _time_outputs(bootstrap: str, names: list[str], expected: int, count_topic: str,
                        timeout: float, pids: list[int], min_seconds: float = MIN_SECONDS
                        ) -> tuple[float, float, tuple[float, float, float]]:
    """Seconds from the first to the `expected`-th record on `count_topic`, the CPU seconds the
    processes `pids` used meanwhile, and `Run.shape`; shorter than `min_seconds` is refused."""
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(*names, bootstrap_servers=bootstrap, group_id=None,
                         auto_offset_reset="earliest", max_poll_records=10000)
    await c.start()
    first = None
    n = 0
    at10: float | None = None
    at90: float | None = None
    deadline = time.monotonic() + timeout
    try:
        while n < expected:
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out: {n}/{expected} on {count_topic}")
            batch = await c.getmany(timeout_ms=200)
            for tp, recs in batch.items():
                if tp.topic == count_topic and recs:
                    if first is None:
                        first = time.monotonic()
                        cpu_first = _cpu_seconds(pids)
                    n += len(recs)
                    if at10 is None and n >= expected / 10:
                        at10 = time.monotonic() - first
                    if at90 is None and n >= expected * 9 / 10:
                        at90 = time.monotonic() - first
        took = time.monotonic() - (first or time.monotonic())
        cpu = _cpu_seconds(pids) - cpu_first
        if took < min_seconds:
            # First and last record came in a handful of fetches: the rate would be noise.
            raise SystemExit(f"{count_topic}: all {expected} records within {took:.3f} s, too "
                             f"short to measure; give more --people")
        assert at10 is not None and at90 is not None  # n reached expected
        return took, cpu, (at10, at90, took)
    finally:
        await c.stop()


def _peak_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM, Linux /proc), in MB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _history(people: int) -> list[bytes]:
    out = []
    for line in generate(people=people, seed=3, bad_ratio=0.0):
        try:
            decode_event(line)
        except BadInput:
            continue
        out.append(line)
    return out


@contextlib.contextmanager
def loaded_broker(lines: list[bytes], made_topics: tuple[str, ...],
                  engine: str) -> Iterator[tuple[Any, str]]:
    """A fresh local broker of `engine` holding `lines` on the input topics, with `made_topics`
    created too (4 partitions each), and a scratch folder."""
    with make_broker(engine) as broker, tempfile.TemporaryDirectory() as tmp:
        ensure_topics(broker.bootstrap, 4, topics.INPUT_TOPICS + made_topics)
        run_blocking(produce_lines(lines, broker.bootstrap, partitions=4))
        yield broker, tmp


def worker_command(bootstrap: str, data_dir: str, flags: tuple[str, ...],
                   *extra: str) -> list[str]:
    """`mynapoint worker` (Faust) with the demo rules and its own web port, logging warnings
    only; `flags` are the broker's worker flags."""
    return [sys.executable, "-m", "agents.worker", "--bootstrap", bootstrap,
            "--data-dir", data_dir, "--web-port", str(free_port()), *flags,
            "--config", str(ROOT / "streams" / "data" / "demo.toml"), "--loglevel", "warning",
            *extra]


def _measure(lines: list[bytes], made_topics: tuple[str, ...], commands, count_topic: str,
             timeout: float, engine: str, journal: str | None = None) -> Run:
    """Events/s of the processes `commands(bootstrap, tmpdir, worker_flags)` starts on a fresh
    broker of `engine` holding `lines`, from their first record on `count_topic` to the
    `len(lines)`-th, and the CPU those processes used meanwhile (not the broker's); with
    `journal`, the records and entries of that topic at the end (`Run.journal`)."""
    with loaded_broker(lines, made_topics, engine) as (broker, tmp):
        bs = broker.bootstrap
        procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for cmd in commands(bs, tmp, broker.worker_flags)]
        try:
            took, cpu, shape = asyncio.run(_time_outputs(bs, [count_topic], len(lines),
                                                         count_topic, timeout,
                                                         [p.pid for p in procs]))
            peak = max(_peak_mb(p.pid) for p in procs)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=60)
        counted = None if journal is None else _journal_counts(bs, journal)
        return Run(len(lines) / took, 1e6 * cpu / len(lines), cpu / took, shape, peak, counted)


def _journal_counts(bootstrap: str, journal: str) -> tuple[int, int]:
    """The records of the pipeline's journal, and the entries they hold."""
    dump = asyncio.run(read_topics(bootstrap, [journal], timeout=120))
    records = dump.records[journal]
    return len(records), sum(len(journal_entries(r.key, r.value)) for r in records)


def run_relay(lines: list[bytes], faust_agents: bool = False, repeat: int = 1,
              engine: str = "tansu") -> Run:
    """The bare relay (aiokafka, or Faust agents with `faust_agents`), in events/s, over the
    history sent `repeat` times (a relay does not look at the records, only their number)."""
    hops = [(",".join(topics.INPUT_TOPICS), MID, "relay-a"), (MID, OUT, "relay-b")]

    def commands(bs: str, tmp: str, flags: tuple[str, ...]) -> list[list[str]]:
        if faust_agents:
            return [[sys.executable, "-c", FAUST_RELAY, bs, src, dst, group, str(free_port())]
                    for src, dst, group in hops]
        return [[sys.executable, "-c", RELAY, bs, src, dst, group] for src, dst, group in hops]

    return _measure(lines * repeat, (MID, OUT), commands, OUT, 900, engine)


def run_pipeline(lines: list[bytes], idle_wait: float = 3.0, workers: int = 1,
                 engine: str = "tansu", standby_replicas: int | None = None,
                 max_held: int | None = None) -> Run:
    """`mynapoint worker` x `workers`; `standby_replicas`, `max_held` (the bound on records held
    for alignment) None: the worker's default."""
    standby = () if standby_replicas is None else ("--standby-replicas", str(standby_replicas))
    if max_held is not None:
        standby += ("--max-held-per-partition", str(max_held))

    def commands(bs: str, tmp: str, flags: tuple[str, ...]) -> list[list[str]]:
        return [worker_command(bs, os.path.join(tmp, f"w{i}"), flags, "--metrics-port", "0",
                               "--idle-wait", str(idle_wait), *standby)
                for i in range(workers)]

    return _measure(lines, WORKER_TOPICS, commands, topics.DECISIONS, 1800, engine,
                    journal=topics.JOURNAL)


def skeleton_spec(spec: str) -> tuple[str, int]:
    """`--skeleton`'s WRITES[/N]: the table writes ("2direct") and the most journal entries a
    record (N, 1 without)."""
    table_writes, _, per = spec.partition("/")
    return table_writes, int(per or 1)


def run_skeleton(lines: list[bytes], spec: str, engine: str = "tansu") -> Run:
    """`SKELETON` in one process, in events/s; `spec` as `skeleton_spec` reads it."""
    table_writes, per = skeleton_spec(spec)
    journal, decisions, others = "bench.skeleton.journal", "bench.skeleton.out", "bench.skeleton.more"

    def commands(bs: str, tmp: str, flags: tuple[str, ...]) -> list[list[str]]:
        return [[sys.executable, "-c", SKELETON, bs, ",".join(topics.INPUT_TOPICS), journal,
                 decisions, others, "bench-skeleton", str(free_port()), os.path.join(tmp, "w"),
                 table_writes, str(per)]]

    return _measure(lines, (journal, decisions, others), commands, decisions, 900, engine)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--people", type=int, default=5000)
    ap.add_argument("--workers", type=int, nargs="*", default=[1, 2],
                    help="pipeline runs to make, by number of workers (default: 1 2)")
    ap.add_argument("--engine", choices=("tansu", "kafka"), default="tansu",
                    help="the local broker every run uses (default: tansu)")
    ap.add_argument("--skeleton", nargs="*", default=[], metavar="WRITES",
                    help="also run, in one Faust worker, only the records the design sends per "
                         "event (journal, WRITES table writes, 1.4 outcomes), for each WRITES; "
                         "WRITES ending in 'direct' (e.g. 2direct): each write puts the value in "
                         "the table's store and sends its changelog record through the producer, "
                         "instead of going through the table; WRITES/N (e.g. 2direct/4): up to N "
                         "entries in one journal record (the intake agent takes up to N input "
                         "records at a time and sends one record per partition among them)")
    ap.add_argument("--standby-replicas", type=int, default=None, metavar="N",
                    help="run the workers with --standby-replicas N (default: the worker's "
                         "default, 1; with two workers each keeps the other's tables warm)")
    ap.add_argument("--max-held", type=int, nargs="*", default=[None], metavar="N",
                    help="run the pipeline with --max-held-per-partition N, once for each N "
                         "(default: the worker's default)")
    ap.add_argument("--record", action="store_true",
                    help="add the result to the table in docs/BENCHMARKS.md")
    args = ap.parse_args()
    lines = _history(args.people)
    print(f"{len(lines):,} events for {args.people:,} people", flush=True)
    relay = run_relay(lines, repeat=RELAY_REPEAT, engine=args.engine).rate
    print(f"bare aiokafka relay, 2 hops, 2 processes ({RELAY_REPEAT} x the history): "
          f"{relay:,.0f} events/s", flush=True)
    faust = run_relay(lines, faust_agents=True, engine=args.engine)
    frelay = faust.rate
    print(f"Faust relay, 2 hops, 2 workers: {frelay:,.0f} events/s "
          f"({frelay / relay:.3f} of the relay); {faust.usage()}", flush=True)
    for writes in args.skeleton:
        run = run_skeleton(lines, writes, engine=args.engine)
        table_writes, per = skeleton_spec(writes)
        journal = f"journal of up to {per} entries a record" if per > 1 else "journal"
        print(f"skeleton, 1 worker, the design's records only ({journal}, {table_writes} table "
              f"writes, 1.4 outcomes): {run.rate:,.0f} events/s: {run.rate / frelay:.3f} of the Faust "
              f"relay; {run.usage()}", flush=True)
    rows = []
    for n, held in ((n, held) for n in args.workers for held in args.max_held):
        run = run_pipeline(lines, workers=n, engine=args.engine,
                           standby_replicas=args.standby_replicas, max_held=held)
        rate = run.rate
        standby = ("" if args.standby_replicas is None
                   else f", --standby-replicas {args.standby_replicas}")
        standby += "" if held is None else f", --max-held-per-partition {held}"
        rows.append(
            f"| {time.strftime('%Y-%m-%d')} | {len(lines):,} | {relay:,.0f} | "
            f"{frelay:,.0f} ({frelay / relay:.3f}) | {n} | {rate:,.0f} | {rate / relay:.3f} | "
            f"{rate / frelay:.3f} | {os.cpu_count()} CPU, Python {platform.python_version()}, "
            f"{args.engine}{standby} |"
        )
        print(f"pipeline, {n} worker(s){standby}: {rate:,.0f} events/s: {rate / relay:.3f} of the relay, "
              f"{rate / frelay:.3f} of the Faust relay; {run.usage()} (the Faust relay's CPU "
              f"an event: {faust.cpu_us / run.cpu_us:.3f} of the pipeline's)", flush=True)
    if args.record:
        record(rows)


def record(rows: list[str], marker: str = TABLE_END) -> None:
    """Adds `rows` to the table of docs/BENCHMARKS.md that ends at `marker`."""
    docs = ROOT / "docs" / "BENCHMARKS.md"
    text = docs.read_text(encoding="utf-8")
    end = text.index(marker)
    docs.write_text(text[:end] + "".join(r + "\n" for r in rows) + text[end:], encoding="utf-8")


if __name__ == "__main__":
    main()
