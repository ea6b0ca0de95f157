"""An experiment, not the product: what the same core reaches without Faust on the hot path.

Issue 3 asks for 0.5 of a bare relay; a bare Faust relay of the same hops measures under 0.09
(bench_pipeline.py), so no pipeline of Faust agents can get there. This script measures the other
design, the one ../shared/notes/PERFORMANCE.md sketched, built around the very same core
(`streams.core.align.Aligner`, `streams.core.ledger.fold`, `streams.core.claims.Claims`, the schemas), so that the
owners can weigh the change with a number rather than a guess:

- intake process: aiokafka `getmany` over the six input topics, decode and validate, event-time
  alignment, one journal record per event, commit after the batch is sent;
- ledger process: aiokafka `getmany` over the journal, `fold` per entry with the person's record
  in a dict over RocksDB (rocksdict), one `WriteBatch` and one changelog record per person touched
  per poll, outcomes sent in a batch, commit after.

What it leaves out, so it flatters the design by that much: the claims round trip through Kafka
(claims are answered in the ledger process: one process owns every partition here), dead
letters, metrics, rebalancing and recovery (one process per role, nothing restarts), a bounded
cache. Everything it decides is counted like the real pipeline's decisions, against the same
relay, in the same run:

    .venv/bin/python bench/bench_lean.py --people 3000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_pipeline import RELAY_REPEAT, _history, _measure, run_relay  # noqa: E402

from schemas import topics  # noqa: E402

CHANGELOG = "bench.lean.persons-changelog"
# Larger polls than the relay's: alignment releases a partition's records only as far as its
# slowest topic has been read, so small polls kept both roles idle (5,000: about 0.33 of the relay).
POLL = {"max_poll_records": 20000, "fetch_max_bytes": 32 << 20,
        "max_partition_fetch_bytes": 4 << 20, "auto_offset_reset": "earliest",
        "enable_auto_commit": False}
SEND = {"linger_ms": 10, "max_batch_size": 256 << 10}


class BatchSender:
    """Records sent as whole batches per topic partition (aiokafka `create_batch`/`send_batch`):
    no future and no partitioner call per record. Partitions are Kafka's default (murmur2 of the
    key), as the real pipeline's producer picks them."""

    def __init__(self, producer):  # type: ignore[no-untyped-def]
        self.producer = producer
        self.partitions: dict[str, int] = {}

    async def send(self, records: list[tuple[str, bytes, bytes]]) -> list[asyncio.Future]:
        from aiokafka.partitioner import murmur2

        by_tp: dict[tuple[str, int], list[tuple[bytes, bytes]]] = {}
        for topic, key, value in records:
            n = self.partitions.get(topic)
            if n is None:
                n = self.partitions[topic] = len(await self.producer.partitions_for(topic))
            by_tp.setdefault((topic, (murmur2(key) & 0x7FFFFFFF) % n), []).append((key, value))
        futures = []
        for (topic, partition), items in by_tp.items():
            batch = self.producer.create_batch()
            for key, value in items:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    futures.append(await self.producer.send_batch(batch, topic,
                                                                  partition=partition))
                    batch = self.producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
            futures.append(await self.producer.send_batch(batch, topic, partition=partition))
        return futures


class Committer:
    """Commits each poll's offsets once its sends are acknowledged, in poll order, while the next
    polls are already being processed (waiting for acks before polling made each role idle most
    of the time)."""

    def __init__(self, consumer):  # type: ignore[no-untyped-def]
        self.consumer = consumer
        self.last: asyncio.Task | None = None

    def after(self, futures: list[asyncio.Future], offsets) -> None:  # type: ignore[no-untyped-def]
        previous = self.last

        async def settle() -> None:
            if previous is not None:
                await previous
            await asyncio.gather(*futures)
            await self.consumer.commit(offsets)

        self.last = asyncio.ensure_future(settle())


async def intake(bootstrap: str, at_once: bool = False) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    from schemas.codec import BadInput, decode_event
    from schemas.journal import JOURNAL_ENCODER, EventEntry
    from streams.core.align import Aligner

    consumer = AIOKafkaConsumer(*topics.INPUT_TOPICS, bootstrap_servers=bootstrap,
                                group_id="lean-intake", **POLL)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **SEND)
    await consumer.start()
    await producer.start()
    aligner = Aligner(topics.INPUT_TOPICS, 3.0)
    sender, committer = BatchSender(producer), Committer(consumer)

    def has_more(topic: str, partition: int, next_offset: int) -> bool:
        hw = consumer.highwater(TopicPartition(topic, partition))
        return hw is not None and hw > next_offset

    while True:
        batch = await consumer.getmany(timeout_ms=100)
        now = time.monotonic()
        for tp, records in batch.items():
            for r in records:
                try:
                    ev = decode_event(r.value)
                except BadInput:
                    aligner.passed(tp.topic, tp.partition, r.offset, now)
                    continue
                aligner.add(tp.topic, tp.partition, r.offset, ev.occurred_at.timestamp(),
                            (r.key, r.value), now)
        # --at-once: no waiting for event time, to measure what alignment costs in a backlog.
        released = aligner.flush() if at_once else aligner.release(now, has_more)
        if not released:
            continue
        out = []
        done: dict[TopicPartition, int] = {}
        for held in released:
            key, value = held.item
            entry = EventEntry(topic=held.topic, partition=held.partition, offset=held.offset,
                               value=value, late=held.late)
            out.append((topics.JOURNAL, key, JOURNAL_ENCODER.encode(entry)))
            done[TopicPartition(held.topic, held.partition)] = held.offset + 1
        committer.after(await sender.send(out), done)


async def ledger(bootstrap: str, data_dir: str) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from rocksdict import Options, Rdict, WriteBatch

    from schemas.codec import OUTCOME_ENCODER
    from schemas.journal import JOURNAL_DECODER, AnswerEntry
    from schemas.outcomes import TOPIC_OF_TYPE as out_topic
    from streams.core.claims import Claims
    from streams.core.config import load_config
    from streams.core.ledger import RECORD_DECODER, RECORD_ENCODER, LedgerRecord, fold
    cfg = load_config(str(ROOT / "streams" / "data" / "demo.toml"))
    consumer = AIOKafkaConsumer(topics.JOURNAL, bootstrap_servers=bootstrap,
                                group_id="lean-ledger", **POLL)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **SEND)
    await consumer.start()
    await producer.start()
    db = Rdict(data_dir, Options(raw_mode=True))
    cache: dict[bytes, LedgerRecord] = {}
    claims = Claims(cfg.reservation_budget)
    sender, committer = BatchSender(producer), Committer(consumer)
    while True:
        batch = await consumer.getmany(timeout_ms=100)
        if not batch:
            continue
        touched: dict[bytes, LedgerRecord] = {}
        sends: list[tuple[str, bytes, bytes]] = []
        for records in batch.values():
            queue = deque((r.key, JOURNAL_DECODER.decode(r.value)) for r in records)
            while queue:
                key, entry = queue.popleft()
                record = cache.get(key)
                if record is None:
                    stored = db.get(key)
                    record = RECORD_DECODER.decode(stored) if stored is not None else None
                folded = fold(record, entry, cfg)
                cache[key] = touched[key] = folded.record
                sends.extend((out_topic[type(o)], key, OUTCOME_ENCODER.encode(o))
                             for o in folded.outcomes)
                for req in reversed(folded.claims):
                    ans = claims.answer(req.kind, req.key, req.person_id)
                    queue.appendleft((req.person_id.encode(), AnswerEntry(
                        claim_kind=req.kind, claim_key=req.key, person_id=req.person_id,
                        event_id=req.event_id, granted=ans.granted, holder=ans.holder)))
        wb = WriteBatch(raw_mode=True)
        for key, record in touched.items():
            value = RECORD_ENCODER.encode(record)
            wb.put(key, value)
            sends.append((CHANGELOG, key, value))
        db.write(wb)
        offsets = {tp: records[-1].offset + 1 for tp, records in batch.items()}
        committer.after(await sender.send(sends), offsets)


def run_lean(lines: list[bytes], at_once: bool = False) -> float:
    here = str(Path(__file__).resolve())

    def commands(bs: str, tmp: str, flags: tuple[str, ...] = ()) -> list[list[str]]:
        return [[sys.executable, here, "--role", "intake", "--bootstrap", bs]
                + (["--at-once"] if at_once else []),
                [sys.executable, here, "--role", "ledger", "--bootstrap", bs,
                 "--data-dir", os.path.join(tmp, "lean")]]

    made = topics.OUTPUT_TOPICS + (topics.JOURNAL, CHANGELOG)
    return _measure(lines, made, commands, topics.DECISIONS, 900, "tansu").rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=3000)
    ap.add_argument("--role", choices=["intake", "ledger"], help=argparse.SUPPRESS)
    ap.add_argument("--bootstrap", help=argparse.SUPPRESS)
    ap.add_argument("--data-dir", help=argparse.SUPPRESS)
    ap.add_argument("--at-once", action="store_true",
                    help="also measure with every record released as soon as it is read (no "
                    "event-time alignment): what alignment costs on a backlog")
    args = ap.parse_args()
    if args.role == "intake":
        asyncio.run(intake(args.bootstrap, args.at_once))
        return
    if args.role == "ledger":
        asyncio.run(ledger(args.bootstrap, args.data_dir))
        return
    lines = _history(args.people)
    print(f"{len(lines):,} events for {args.people:,} people", flush=True)
    relay = run_relay(lines, repeat=RELAY_REPEAT).rate
    print(f"bare aiokafka relay, 2 hops, 2 processes ({RELAY_REPEAT} x the history): "
          f"{relay:,.0f} events/s", flush=True)
    lean = run_lean(lines)
    print(f"lean pipeline (aiokafka + the same core), 2 processes: {lean:,.0f} events/s: "
          f"{lean / relay:.3f} of the relay", flush=True)
    if args.at_once:
        fast = run_lean(lines, at_once=True)
        print(f"lean pipeline, records released at once (no alignment): {fast:,.0f} events/s: "
              f"{fast / relay:.3f} of the relay", flush=True)


if __name__ == "__main__":
    main()
