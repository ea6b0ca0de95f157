"""Time to recover from the loss of one of two workers, with and without standby replicas.

Two workers of one consumer group decide a backlog; when a third of it is decided, one worker is
killed with SIGKILL. Measured: the seconds from the kill until every partition of
`mynapoint.decisions` has grown again (the survivor has taken the dead worker's partitions,
restored their tables and decides on them). The broker's session timeout (10 s, the worker's
setting) is in it: that is when Kafka notices the dead worker.

    python bench/bench_failover.py --engine kafka --people 5000 [--record]
"""

from __future__ import annotations

import argparse
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

import bench_pipeline  # noqa: E402

from clients.admin import ALL_TOPICS, ensure_topics  # noqa: E402
from clients.connect import free_port, run_blocking  # noqa: E402
from clients.produce import produce_lines  # noqa: E402
from devtools.brokers import make_broker  # noqa: E402
from devtools.demo import generate  # noqa: E402
from schemas import topics  # noqa: E402

TABLE_END = "<!-- failover rows end -->"


async def _decision_ends(bootstrap: str) -> dict[int, int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topics.DECISIONS, p) for p in range(4)]
        ends = await consumer.end_offsets(tps)
        return {tp.partition: int(n) for tp, n in ends.items()}
    finally:
        await consumer.stop()


def _wait(bootstrap: str, done, timeout: float) -> dict[int, int]:
    deadline = time.monotonic() + timeout
    while True:
        ends = run_blocking(_decision_ends(bootstrap))
        if done(ends):
            return ends
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out; decisions per partition: {ends}")
        time.sleep(0.2)


def run(engine: str, people: int, standbys: int) -> tuple[float, int]:
    lines = list(generate(people=people, seed=3, bad_ratio=0.0))
    with make_broker(engine, die_with_parent=True) as broker, tempfile.TemporaryDirectory() as tmp:
        bs = broker.bootstrap
        ensure_topics(bs, 4, ALL_TOPICS)
        workers = [subprocess.Popen(
            [sys.executable, "-m", "agents.worker", "--bootstrap", bs,
             "--data-dir", os.path.join(tmp, f"w{i}"), "--metrics-port", "0",
             "--web-port", str(free_port()), *broker.worker_flags,
             "--standby-replicas", str(standbys), "--loglevel", "warning",
             "--config", str(ROOT / "streams" / "data" / "demo.toml")],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(2)]
        try:
            report = run_blocking(produce_lines(lines, bs, partitions=4))
            sent = sum(report.sent.values())
            _wait(bs, lambda e: sum(e.values()) >= sent // 3, 900)
            workers[1].send_signal(signal.SIGKILL)
            killed = time.monotonic()
            at_kill = run_blocking(_decision_ends(bs))
            _wait(bs, lambda e: all(e[p] > at_kill[p] for p in e)
                  or sum(e.values()) >= sent, 900)
            return time.monotonic() - killed, sent
        finally:
            for w in workers:
                if w.poll() is None:
                    w.terminate()
            for w in workers:
                w.wait(timeout=60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--engine", choices=("tansu", "kafka"), default="kafka")
    ap.add_argument("--people", type=int, default=5000)
    ap.add_argument("--record", action="store_true", help="add the rows to docs/BENCHMARKS.md")
    args = ap.parse_args()
    rows = []
    for standbys in (1, 0):
        took, sent = run(args.engine, args.people, standbys)
        print(f"{args.engine}, standby replicas {standbys}: every partition decided again "
              f"{took:.1f} s after the SIGKILL ({sent:,} events)", flush=True)
        rows.append(f"| {time.strftime('%Y-%m-%d')} | {args.engine} | {sent:,} | {standbys} | "
                    f"{took:.1f} | {os.cpu_count()} CPU, Python {platform.python_version()} |")
    if args.record:
        bench_pipeline.record(rows, TABLE_END)


if __name__ == "__main__":
    main()
