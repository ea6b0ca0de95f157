"""Both engines' workers next to three bare relays, in one run: what each engine costs.

Not a test (no thresholds): a measurement, printed and optionally recorded in docs/BENCHMARKS.md.
Every process gets the same pre-produced history on a fresh local broker (Tansu, or Apache Kafka
with `--broker kafka`), as in bench/bench_pipeline.py (whose helpers this reuses):

- aiokafka relay: inputs -> mid -> output, two processes, batched sends (the baseline, over the
  history ten times over, so that its run lasts long enough);
- Faust relay: the same two hops as two Faust workers of one agent each;
- Quix relay: the same two hops as two Quix Streams applications of one dataframe each;
- the Faust worker and the Quix Streams worker (`mynapoint worker --engine faust|quix`): intake,
  journal, ledger with state and changelogs, claims, outcomes; one worker, then two.

The clock runs from the first decision to the last one. Usage:
.venv/bin/python bench/bench_engines.py [--people N] [--broker tansu|kafka] [--record]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_pipeline as bp  # noqa: E402

from clients.connect import free_port  # noqa: E402
from schemas import topics  # noqa: E402
from schemas.settings import WORKER_MODULES  # noqa: E402

TABLE_END = "<!-- bench:engines:end -->"

QUIX_RELAY = r'''
import sys, warnings
warnings.filterwarnings("ignore", message="The httpx module is deprecated")
from quixstreams import Application
bootstrap, sources, target, group = sys.argv[1:]
app = Application(broker_address=bootstrap, consumer_group=group, auto_offset_reset="earliest",
                  commit_interval=1.0, producer_extra_config={"linger.ms": 10},
                  loglevel="WARNING")
out = app.topic(target, key_serializer="bytes", value_serializer="bytes")
for name in sources.split(","):
    source = app.topic(name, key_deserializer="bytes", value_deserializer="bytes")
    app.dataframe(source).to_topic(out)
app.run()
'''


def run_quix_relay(lines: list[bytes], broker: str) -> float:
    hops = [(",".join(topics.INPUT_TOPICS), bp.MID, "quix-relay-a"),
            (bp.MID, bp.OUT, "quix-relay-b")]

    def commands(bs: str, tmp: str, flags: tuple[str, ...]) -> list[list[str]]:
        return [[sys.executable, "-c", QUIX_RELAY, bs, src, dst, group]
                for src, dst, group in hops]

    return bp._measure(lines, (bp.MID, bp.OUT), commands, bp.OUT, 900, broker).rate


def run_worker(lines: list[bytes], engine: str, workers: int, broker: str) -> float:
    def commands(bs: str, tmp: str, flags: tuple[str, ...]) -> list[list[str]]:
        return [
            [sys.executable, "-m", WORKER_MODULES[engine], "--bootstrap", bs,
             "--data-dir", os.path.join(tmp, f"w{i}"), "--metrics-port", "0",
             "--web-port", str(free_port()), *flags, "--idle-wait", "3.0",
             "--config", str(ROOT / "streams" / "data" / "demo.toml"), "--loglevel", "warning"]
            for i in range(workers)
        ]

    made = topics.OUTPUT_TOPICS + (topics.JOURNAL, topics.CLAIMS)
    return bp._measure(lines, made, commands, topics.DECISIONS, 1800, broker).rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--people", type=int, default=5000)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--broker", choices=("tansu", "kafka"), default="tansu")
    ap.add_argument("--record", action="store_true",
                    help="add the results to the table in docs/BENCHMARKS.md")
    args = ap.parse_args()
    lines = bp._history(args.people)
    print(f"{len(lines):,} events for {args.people:,} people, {args.broker}", flush=True)
    relay = bp.run_relay(lines, repeat=bp.RELAY_REPEAT, engine=args.broker).rate
    print(f"aiokafka relay, 2 hops: {relay:,.0f} events/s", flush=True)
    rates = {"Faust relay, 2 hops": bp.run_relay(lines, faust_agents=True, engine=args.broker).rate,
             "Quix relay, 2 hops": run_quix_relay(lines, args.broker)}
    for name, rate in rates.items():
        print(f"{name}: {rate:,.0f} events/s ({rate / relay:.3f} of the aiokafka relay)",
              flush=True)
    for engine in ("faust", "quix"):
        for n in args.workers:
            rate = run_worker(lines, engine, n, args.broker)
            name = f"{engine} worker x{n}"
            rates[name] = rate
            print(f"{name}: {rate:,.0f} events/s ({rate / relay:.3f} of the aiokafka relay)",
                  flush=True)
    if args.record:
        stamp = (f"{time.strftime('%Y-%m-%d')} | {len(lines):,} | {args.broker} | "
                 f"{os.cpu_count()} CPU, Python {platform.python_version()}")
        rows = [f"| {stamp} | aiokafka relay, 2 hops | {relay:,.0f} | 1.000 |"]
        rows += [f"| {stamp} | {name} | {rate:,.0f} | {rate / relay:.3f} |"
                 for name, rate in rates.items()]
        bp.record(rows, TABLE_END)


if __name__ == "__main__":
    main()
