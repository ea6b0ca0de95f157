"""What `--processing-guarantee exactly_once` changes, on each engine, through two SIGKILLs.

For each engine (Faust, Quix Streams) and each guarantee (at_least_once, exactly_once), on a fresh
local Apache Kafka (the only broker here with transactions): a history in event-time order is
produced, one worker decides it, and it is killed with SIGKILL and started again when a third and
when two thirds of the events have decisions. Measured:

- the seconds from the first start until every event has its decision (distinct decision ids,
  as many as `simulate` gives the same history);
- the outcome records published (decisions, grants, alerts), and how many of them are repeats of
  an `outcome_id` already published: read uncommitted, and read committed (what a consumer with
  `isolation.level=read_committed` sees).

Not a test (no thresholds): a measurement, printed and optionally recorded in docs/BENCHMARKS.md.

    .venv/bin/python bench/bench_guarantee.py [--people 1000] [--engines faust quix] [--record]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import msgspec  # noqa: E402
from bench_pipeline import record  # noqa: E402

from clients.admin import ALL_TOPICS, ensure_topics  # noqa: E402
from clients.connect import free_port, run_blocking  # noqa: E402
from clients.produce import in_send_order, produce_lines  # noqa: E402
from devtools.brokers import make_broker  # noqa: E402
from devtools.demo import generate  # noqa: E402
from schemas import topics  # noqa: E402
from schemas.settings import WORKER_MODULES  # noqa: E402
from streams.audit.simulate import simulate_to  # noqa: E402
from streams.core.config import load_config  # noqa: E402

CONFIG = ROOT / "streams" / "data" / "demo.toml"
TABLE_END = "<!-- bench:guarantee:end -->"
GUARANTEES = ("at_least_once", "exactly_once")
PARTITIONS = 4
OUTCOMES = (topics.DECISIONS, topics.GRANTS, topics.ALERTS)
_ID = msgspec.json.Decoder(dict)


def history(people: int, seed: int) -> list[bytes]:
    """A generated history (valid lines only) in the event-time order `mynapoint produce` sends."""
    return in_send_order(generate(people=people, seed=seed, bad_ratio=0.0))


def expected_decisions(lines: list[bytes]) -> int:
    """The distinct decision ids `simulate` gives the history."""
    out = io.BytesIO()
    simulate_to(io.BytesIO(b"\n".join(lines) + b"\n"), out, load_config(str(CONFIG)))
    return len({o["outcome_id"] for o in map(_ID.decode, out.getvalue().splitlines())
                if o.get("kind") == "decision"})


class Worker:
    def __init__(self, engine: str, guarantee: str, bootstrap: str, data_dir: str,
                 flags: tuple[str, ...]) -> None:
        self.cmd = [sys.executable, "-m", WORKER_MODULES[engine], "--bootstrap", bootstrap,
                    "--data-dir", data_dir, "--metrics-port", "0", *flags,
                    "--processing-guarantee", guarantee, "--config", str(CONFIG),
                    "--loglevel", "warning"]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([*self.cmd, "--web-port", str(free_port())], cwd=ROOT,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None:
            self.process.send_signal(sig)
            self.process.wait(timeout=60)
            self.process = None


async def _decide(bootstrap: str, worker: Worker, sent: int, expected: int,
                  timeout: float) -> float:
    """Seconds from the worker's first start until `expected` distinct decision ids are published;
    the worker is killed and started again when a third and two thirds of `sent` are decided."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                fetch_max_wait_ms=100)
    await consumer.start()
    try:
        tps = [TopicPartition(topics.DECISIONS, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        kills = [sent // 3, 2 * sent // 3]
        records, ids = 0, set[str]()
        started = time.monotonic()
        worker.start()
        while len(ids) < expected:
            if time.monotonic() - started > timeout:
                raise SystemExit(f"timed out: {len(ids):,} of {expected:,} decisions")
            batch = await consumer.getmany(timeout_ms=200)
            for rs in batch.values():
                records += len(rs)
                ids.update(_ID.decode(r.value)["outcome_id"] for r in rs)
            if kills and records >= kills[0]:
                kills.pop(0)
                worker.kill()
                worker.start()
        return time.monotonic() - started
    finally:
        await consumer.stop()


async def _outcomes(bootstrap: str, isolation: str) -> tuple[int, int]:
    """(records, distinct outcome ids) on the outcome topics, read with `isolation`."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                isolation_level=isolation, fetch_max_wait_ms=100)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in OUTCOMES for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = {tp: n for tp, n in (await consumer.end_offsets(tps)).items() if n}
        records, ids = 0, set[str]()
        while True:
            behind = [tp for tp, n in ends.items() if await consumer.position(tp) < n]
            if not behind:
                break
            batch = await consumer.getmany(timeout_ms=500)
            for rs in batch.values():
                records += len(rs)
                ids.update(_ID.decode(r.value)["outcome_id"] for r in rs)
        return records, len(ids)
    finally:
        await consumer.stop()


def run(engine: str, guarantee: str, lines: list[bytes], expected: int) -> dict[str, float]:
    with make_broker("kafka", die_with_parent=True) as broker, \
            tempfile.TemporaryDirectory() as tmp:
        bs = broker.bootstrap
        ensure_topics(bs, PARTITIONS, ALL_TOPICS)
        report = run_blocking(produce_lines(lines, bs, partitions=PARTITIONS))
        sent = sum(report.sent.values())
        worker = Worker(engine, guarantee, bs, os.path.join(tmp, "data"), broker.worker_flags)
        try:
            took = asyncio.run(_decide(bs, worker, sent, expected, 1800))
        finally:
            # Stopped as an operator stops it (it flushes and commits), then counted: what it
            # still had to send after the last decision (grants, alerts) is in the counts.
            worker.kill(signal.SIGTERM)
        uncommitted = asyncio.run(_outcomes(bs, "read_uncommitted"))
        committed = asyncio.run(_outcomes(bs, "read_committed"))
    return {"events": sent, "seconds": took,
            "records": uncommitted[0], "repeats": uncommitted[0] - uncommitted[1],
            "committed": committed[0], "committed_repeats": committed[0] - committed[1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=61)
    ap.add_argument("--engines", nargs="+", choices=sorted(WORKER_MODULES),
                    default=sorted(WORKER_MODULES))
    ap.add_argument("--record", action="store_true", help="add the rows to docs/BENCHMARKS.md")
    args = ap.parse_args()
    lines = history(args.people, args.seed)
    expected = expected_decisions(lines)
    machine = f"{os.cpu_count()} CPU, Python {platform.python_version()}"
    rows = []
    print(f"{len(lines):,} events, {expected:,} distinct decisions expected")
    for engine in args.engines:
        for guarantee in GUARANTEES:
            r = run(engine, guarantee, lines, expected)
            row = (f"| {time.strftime('%Y-%m-%d')} | {engine} | {guarantee} | {r['events']:,} | "
                   f"{r['seconds']:.1f} | {r['records']:,} | {r['repeats']:,} | "
                   f"{r['committed']:,} | {r['committed_repeats']:,} | {machine} |")
            print(row, flush=True)
            rows.append(row)
    if args.record:
        record(rows, TABLE_END)


if __name__ == "__main__":
    main()
