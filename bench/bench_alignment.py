"""Latency from produce to decision (p50, p99) and throughput, against the alignment idle wait.

Not a test: a measurement on a fresh local Tansu broker with one worker per setting. Events of a
generated history go out in time order through their six topics at a steady rate (so latency is
not queueing behind a backlog); each decision is matched to its event by (person_id, event_id).
Then the same worker setting decides a pre-produced backlog, for throughput (first to last
decision). Usage: .venv/bin/python bench/bench_alignment.py [--idle 0.5 1 3] [--rate 300]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402

from bench.bench_pipeline import _history, _time_outputs  # noqa: E402
from clients.admin import ALL_TOPICS, ensure_topics  # noqa: E402
from clients.connect import free_port, run_blocking  # noqa: E402
from clients.produce import plan, produce_lines  # noqa: E402
from devtools.brokers.tansu import TansuBroker  # noqa: E402
from schemas import topics  # noqa: E402


def _start_worker(bs: str, data: str, idle: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "agents.worker", "--bootstrap", bs, "--data-dir", data,
         "--metrics-port", "0", "--web-port", str(free_port()), "--tansu-compat",
         "--idle-wait", str(idle), "--loglevel", "warning",
         "--config", str(ROOT / "streams" / "data" / "demo.toml")],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


async def _latency(bs: str, lines: list[bytes], rate: float) -> list[float]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bs, linger_ms=0)
    consumer = AIOKafkaConsumer(topics.DECISIONS, bootstrap_servers=bs, group_id=None,
                                auto_offset_reset="latest", fetch_max_wait_ms=50)
    await producer.start()
    await consumer.start()
    sent_at: dict[tuple[str, str], float] = {}
    latencies: list[float] = []

    async def read() -> None:
        while len(latencies) < len(lines):
            batch = await consumer.getmany(timeout_ms=200)
            now = time.monotonic()
            for recs in batch.values():
                for r in recs:
                    d = msgspec.json.decode(r.value)
                    t = sent_at.pop((d["person_id"], d["event_id"]), None)
                    if t is not None:
                        latencies.append(now - t)

    reader = asyncio.create_task(read())
    start = time.monotonic()
    for i, line in enumerate(lines):
        p = plan(line)
        ev = msgspec.json.decode(line)
        sent_at.setdefault((ev["person_id"], ev["event_id"]), time.monotonic())
        await producer.send(p.topic, key=p.key, value=p.value)
        # A steady offered load: this paces the load generator, not a test's outcome.
        delay = start + (i + 1) / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    try:
        await asyncio.wait_for(reader, timeout=120)
    except TimeoutError:
        pass
    await producer.stop()
    await consumer.stop()
    return latencies


def measure(idle: float, lines: list[bytes], backlog: list[bytes], rate: float) -> dict:
    out: dict = {"idle_wait": idle}
    with TansuBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        bs = broker.bootstrap
        ensure_topics(bs, 4, ALL_TOPICS)
        worker = _start_worker(bs, tmp, idle)
        try:
            # Warm up: the worker has joined when a first decision comes back.
            run_blocking(produce_lines(lines[:20], bs))
            asyncio.run(_time_outputs(bs, [topics.DECISIONS], 20, topics.DECISIONS, 300,
                                      [worker.pid], min_seconds=0))
            lat = sorted(asyncio.run(_latency(bs, lines[20:], rate)))
            out["decided"] = len(lat)
            out["p50_ms"] = 1000 * statistics.median(lat) if lat else None
            out["p99_ms"] = 1000 * lat[int(0.99 * (len(lat) - 1))] if lat else None
        finally:
            worker.terminate()
            worker.wait(timeout=60)
    with TansuBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        bs = broker.bootstrap
        ensure_topics(bs, 4, ALL_TOPICS)
        run_blocking(produce_lines(backlog, bs))
        worker = _start_worker(bs, tmp, idle)
        try:
            took, _, _ = asyncio.run(_time_outputs(bs, [topics.DECISIONS], len(backlog),
                                                   topics.DECISIONS, 1800, [worker.pid]))
            out["throughput"] = len(backlog) / took
        finally:
            worker.terminate()
            worker.wait(timeout=60)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--idle", type=float, nargs="+", default=[0.5, 1.0, 3.0])
    ap.add_argument("--rate", type=float, default=300.0, help="offered events/s for latency")
    ap.add_argument("--people", type=int, default=200)
    ap.add_argument("--backlog-people", type=int, default=1000)
    args = ap.parse_args()
    lines = _history(args.people)
    backlog = _history(args.backlog_people)
    print(f"latency run: {len(lines):,} events at {args.rate:g}/s; "
          f"throughput run: {len(backlog):,} events")
    print("| idle wait (s) | p50 (ms) | p99 (ms) | decided | throughput (events/s) |")
    print("|---|---|---|---|---|")
    for idle in args.idle:
        r = measure(idle, lines, backlog, args.rate)
        print(f"| {idle:g} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['decided']:,} | "
              f"{r['throughput']:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
