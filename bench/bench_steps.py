"""The pipeline's steps with no engine at all: what any engine that runs them cannot beat.

Not a test (no thresholds): a measurement, printed.

The worker's steps (streams/pipeline/: intake with event-time alignment, the ledger's fold with
its `persons` and `timeline` state, the claims) run here in one process on in-memory stores, over
the same generated history as bench/bench_pipeline.py, routed as a broker would route it: the
input records per topic and partition in send order (`clients.produce.plan`, the producer's
order), fetched in batches of `FETCH` per source; what the steps send to the journal and the
claims topic is handed straight back to the ledger and the claims step; outcomes are dropped.
No Kafka client, no RocksDB, no changelog, no framework: only the code every engine would call.

Printed, from the same run: the steps' events/s on one core (process CPU time); the same history
through `simulate`'s engine (`streams.core.engine.Engine`, the rules alone, in event-time
order), as a baseline; and, with `--relay`, the bare aiokafka relay of bench/bench_pipeline.py on
a fresh local broker. The steps' rate over the relay's is the ceiling of "the engine's worker
against the relay" for any engine that runs these steps in one process.

    .venv/bin/python bench/bench_steps.py --people 3000 [--relay] [--engine tansu|kafka]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict, deque
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from bench_pipeline import RELAY_REPEAT, _history, run_relay

from clients.produce import event_time_order, plan
from schemas import topics
from schemas.codec import decode_event
from schemas.topics import partition_for_key
from streams.core.config import load_config
from streams.core.engine import Engine
from streams.pipeline.claims import Claims
from streams.pipeline.intake import Intake
from streams.pipeline.ledger import Ledger
from streams.pipeline.outputs import Outputs
from streams.pipeline.runtime import At, Store

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 4
#: Records handed to intake per source at a time, as a consumer's fetch would.
FETCH = 100


def run(coro: Coroutine[Any, Any, None]) -> None:
    """Runs a step's coroutine to its end: nothing here ever waits (the sends are in memory)."""
    try:
        coro.send(None)
    except StopIteration:
        return
    raise RuntimeError("a step waited on something: this bench gives it nothing to wait for")


class Backlog:
    """The input topics as a broker holds them, and the consumer's view for intake."""

    def __init__(self, lines: list[bytes]) -> None:
        self.records: dict[tuple[str, int], list[tuple[bytes, bytes]]] = defaultdict(list)
        for _, p in event_time_order(enumerate(plan(line) for line in lines))[0]:
            self.records[(p.topic, partition_for_key(p.key, PARTITIONS))].append((p.key, p.value))
        self.acknowledged = 0

    # IntakeSource
    def highwater(self, topic: str, partition: int) -> int | None:
        return len(self.records.get((topic, partition), ()))

    def start(self, topic: str, partition: int) -> int | None:
        return None

    def passed_over(self, topic: str, partition: int, start: int, end: int) -> None:
        pass

    async def seek(self, topic: str, partition: int, offset: int,
                   after: int | None = None) -> None:
        raise AssertionError("nothing is skipped here")

    async def position(self, topic: str, partition: int) -> int | None:
        return None

    def rebalancing(self) -> bool:
        return False

    def acknowledge(self, token: Any) -> None:
        self.acknowledged += 1

    pausable = False  # every source is read to its end in turn, as a backlog is

    def pause(self, topic: str, partition: int) -> None:
        raise AssertionError("not pausable")

    def resume(self, topic: str, partition: int) -> None:
        raise AssertionError("not pausable")

    def fetches(self):
        """(topic, partition, offset, key, value) in fetch order: `FETCH` per source in turn."""
        at = dict.fromkeys(self.records, 0)
        while at:
            for source in list(at):
                start = at[source]
                batch = self.records[source][start:start + FETCH]
                for i, (key, value) in enumerate(batch):
                    yield (*source, start + i, key, value)
                if start + FETCH >= len(self.records[source]):
                    del at[source]
                else:
                    at[source] = start + FETCH


def run_steps(lines: list[bytes], rules: Any) -> tuple[float, dict[str, int], dict[str, float]]:
    """CPU seconds of the three steps over the history, how many records were sent to each
    topic, and the wall seconds spent in each step."""
    backlog = Backlog(lines)
    queued: deque[tuple[str, bytes | None, bytes]] = deque()
    offsets: dict[tuple[str, int], int] = defaultdict(int)
    counts: dict[str, int] = defaultdict(int)
    spent: dict[str, float] = defaultdict(float)
    clock = time.perf_counter

    async def send(topic: str, key: bytes | None, value: bytes) -> None:
        queued.append((topic, key, value))

    out = Outputs(send)
    persons: dict[bytes, bytes] = {}
    timeline: dict[bytes, bytes] = {}
    holders: dict[bytes, bytes] = {}
    # The backlog is all there: a source is idle once read to its end, no waiting needed.
    intake = Intake(backlog, out, idle_wait=0.0, journal_partitions=PARTITIONS)
    ledger = Ledger(rules, Store(persons.get, persons.__setitem__),
                    Store(timeline.get, timeline.__setitem__), out)
    claims = Claims(rules, Store(holders.get, holders.__setitem__), out)

    # The partitioner's answers, computed once per key: routing is the broker's work, not the
    # steps'.
    partition_of: dict[bytes, int] = {}

    def deliver() -> None:
        while queued:
            topic, key, value = queued.popleft()
            counts[topic] += 1
            if topic == topics.JOURNAL or topic == topics.CLAIMS:
                assert key is not None
                partition = partition_of.get(key)
                if partition is None:
                    partition = partition_of[key] = partition_for_key(key, PARTITIONS)
                offset = offsets[(topic, partition)]
                offsets[(topic, partition)] = offset + 1
                where = At(topic, partition, offset)
                started = clock()
                if topic == topics.JOURNAL:
                    run(ledger.on_entry(key, value, where, committed=0))
                    spent["ledger"] += clock() - started
                else:
                    run(claims.on_claim(value, where))
                    spent["claims"] += clock() - started

    started = time.process_time()
    for topic, partition, offset, key, value in backlog.fetches():
        t = clock()
        run(intake.on_record(topic, partition, offset, key, value, None))
        spent["intake"] += clock() - t
        deliver()
    run(intake.release())
    deliver()
    took = time.process_time() - started
    assert intake.aligner.held() == 0 and backlog.acknowledged == len(lines)
    return took, dict(counts), dict(spent)


def run_simulate(lines: list[bytes], rules: Any) -> float:
    """CPU seconds of the rules alone over the same events, in event-time order."""
    events = [decode_event(line) for line in lines]
    events.sort(key=lambda e: e.occurred_at)
    engine = Engine(rules)
    started = time.process_time()
    for ev in events:
        engine.process(ev)
    return time.process_time() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3, help="best of this many (default: 3)")
    ap.add_argument("--relay", action="store_true",
                    help="also measure the bare aiokafka relay on a fresh local broker")
    ap.add_argument("--engine", choices=("tansu", "kafka"), default="tansu",
                    help="the local broker of --relay (default: tansu)")
    args = ap.parse_args()
    rules = load_config(str(ROOT / "streams" / "data" / "demo.toml"))
    lines = _history(args.people)
    n = len(lines)
    print(f"{n:,} events for {args.people:,} people", flush=True)
    runs = [run_steps(lines, rules) for _ in range(args.rounds)]
    steps, counts, spent = min(runs, key=lambda r: r[0])
    rules_only = min(run_simulate(lines, rules) for _ in range(args.rounds))
    per_event = {t: c / n for t, c in sorted(counts.items())}
    print("records sent per input event: "
          + ", ".join(f"{t} {v:.2f}" for t, v in per_event.items()))
    print(f"steps, no engine, one core: {n / steps:,.0f} events/s ({steps / n * 1e6:.1f} us an "
          f"event): " + ", ".join(f"{name} {t / n * 1e6:.1f} us" for name, t in spent.items()))
    print(f"rules alone (simulate's engine): {n / rules_only:,.0f} events/s "
          f"({rules_only / n * 1e6:.1f} us an event); the steps take "
          f"{steps / rules_only:.2f} times as long")
    if args.relay:
        relay = run_relay(lines, repeat=RELAY_REPEAT, engine=args.engine).rate
        print(f"bare aiokafka relay, 2 hops, 2 processes, {args.engine}: {relay:,.0f} events/s; "
              f"the steps alone reach {n / steps / relay:.3f} of it")


if __name__ == "__main__":
    main()
