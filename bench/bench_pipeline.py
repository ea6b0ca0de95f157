"""End-to-end throughput of the live pipeline against a bare aiokafka relay, in the same run.

Not a test (no thresholds): a measurement, printed and optionally recorded in docs/BENCHMARKS.md.

Both sides get the same pre-produced input (a generated history on the six input topics, keyed by
person_id, on a fresh local Tansu broker) and make the same number of hops:

- baseline: a bare aiokafka relay in two processes: inputs -> mid topic -> output topic, batched
  sends (the notes' "bare aiokafka relay, two processes");
- pipeline: `mynapoint worker` (intake -> journal -> ledger -> outcomes, with RocksDB tables and
  changelogs, event-time alignment and claims).

The clock runs from the first output record to the last one, so start-up and group joins are
excluded on both sides. Usage: .venv/bin/python bench/bench_pipeline.py [--people N] [--record]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents import topics  # noqa: E402
from agents.admin import ensure_topics  # noqa: E402
from agents.broker import LocalBroker, free_port, run_blocking  # noqa: E402
from agents.produce import produce_lines  # noqa: E402
from schemas.codec import BadInput, decode_event  # noqa: E402
from streams.demo import generate  # noqa: E402

MID, OUT = "bench.relay.mid", "bench.relay.out"

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


async def _time_outputs(bootstrap: str, names: list[str], expected: int, count_topic: str,
                        timeout: float) -> float:
    """Seconds from the first to the `expected`-th record on `count_topic`."""
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(*names, bootstrap_servers=bootstrap, group_id=None,
                         auto_offset_reset="earliest", max_poll_records=10000)
    await c.start()
    first = None
    n = 0
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
                    n += len(recs)
        return time.monotonic() - (first or time.monotonic())
    finally:
        await c.stop()


def _history(people: int) -> list[bytes]:
    out = []
    for line in generate(people=people, seed=3, bad_ratio=0.0):
        try:
            decode_event(line)
        except BadInput:
            continue
        out.append(line)
    return out


def run_relay(lines: list[bytes]) -> float:
    with LocalBroker() as broker:
        bs = broker.bootstrap
        ensure_topics(bs, 4, topics.INPUT_TOPICS + (MID, OUT))
        run_blocking(produce_lines(lines, bs, partitions=4))
        procs = [
            subprocess.Popen([sys.executable, "-c", RELAY, bs, ",".join(topics.INPUT_TOPICS), MID,
                              "relay-a"]),
            subprocess.Popen([sys.executable, "-c", RELAY, bs, MID, OUT, "relay-b"]),
        ]
        try:
            took = asyncio.run(_time_outputs(bs, [OUT], len(lines), OUT, 900))
        finally:
            for p in procs:
                p.terminate()
                p.wait(timeout=30)
        return len(lines) / took


def run_pipeline(lines: list[bytes], idle_wait: float = 3.0) -> float:
    with LocalBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        bs = broker.bootstrap
        ensure_topics(bs, 4, topics.INPUT_TOPICS + topics.OUTPUT_TOPICS
                      + (topics.JOURNAL, topics.CLAIMS))
        run_blocking(produce_lines(lines, bs, partitions=4))
        worker = subprocess.Popen(
            [sys.executable, "-m", "agents.worker", "--bootstrap", bs, "--data-dir", tmp,
             "--metrics-port", "0", "--web-port", str(free_port()), "--tansu-compat",
             "--idle-wait", str(idle_wait), "--config",
             str(ROOT / "streams" / "data" / "demo.toml"), "--loglevel", "warning"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            took = asyncio.run(_time_outputs(bs, [topics.DECISIONS], len(lines),
                                             topics.DECISIONS, 1800))
        finally:
            worker.terminate()
            worker.wait(timeout=60)
        return len(lines) / took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--people", type=int, default=5000)
    ap.add_argument("--record", action="store_true", help="append the result to docs/BENCHMARKS.md")
    args = ap.parse_args()
    lines = _history(args.people)
    print(f"{len(lines):,} events for {args.people:,} people", flush=True)
    relay = run_relay(lines)
    print(f"bare aiokafka relay, 2 hops, 2 processes: {relay:,.0f} events/s", flush=True)
    pipeline = run_pipeline(lines)
    print(f"pipeline (one worker): {pipeline:,.0f} events/s", flush=True)
    ratio = pipeline / relay
    print(f"ratio pipeline/relay: {ratio:.3f}")
    if args.record:
        with open(ROOT / "docs" / "BENCHMARKS.md", "a", encoding="utf-8") as f:
            f.write(
                f"\n| {time.strftime('%Y-%m-%d')} | {platform.python_version()} | "
                f"{os.cpu_count()} cores | {len(lines):,} events | relay {relay:,.0f}/s | "
                f"pipeline {pipeline:,.0f}/s | ratio {ratio:.3f} |\n"
            )


if __name__ == "__main__":
    main()
