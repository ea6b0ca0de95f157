#!/usr/bin/env python
"""How long `mynapoint rescale` takes, per million people, against reading the journal once in the
same run.

    .venv/bin/python bench/bench_rescale.py --people 20000                 # starts its own Kafka
    .venv/bin/python bench/bench_rescale.py --people 20000 --bootstrap HOST:PORT  # an empty one

A script, not a test: timings depend on the machine. Set-up (not measured): the history
`devtools.demo.generate(people)` is decided offline by `streams.audit.replay.record_offline`
(what the live pipeline does, in memory) at 4 partitions, and its journal and `persons` table are
written to the topics, with the group's offsets committed at the journal's ends, as a stopped
deployment leaves them; the timeline changelog gets one row per person holding all of the person's
outcome lines (the live layout splits them in chunks: as many bytes, a few more keys); the claims
changelog stays empty (one small row per account). With `--versions K`, each person's `persons`
row is written K times (K - 1 earlier copies first), as a changelog holds it before the log
cleaner has compacted it: a live worker writes the row at every change of the person. With
`--backlog K`, the input topics hold the inputs the journal names (their group offsets committed
at their ends) and after them the events of K more people, not decided yet: the backlog of a
deployment stopped with a lag, which the rescale moves to the new partitions. Measured:

- baseline: reading the whole journal once (`clients.history.read_topics`), what replay and the
  rescale's snapshot both do;
- rescale 4 -> 8: the whole command (`clients.rescale.Rescaler`), with the time of each step.

Per million people is the measured time scaled linearly (every step is linear in the history).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clients.admin import ALL_TOPICS, ensure_topics_async  # noqa: E402
from clients.history import read_topics  # noqa: E402
from clients.rescale import Rescaler  # noqa: E402
from devtools.demo import generate  # noqa: E402
from schemas import topics  # noqa: E402
from schemas.journal import EventEntry  # noqa: E402
from schemas.topics import TABLES, changelog_topic, partition_for_key  # noqa: E402
from streams.audit.replay import record_offline  # noqa: E402
from streams.core.config import load_config  # noqa: E402
from streams.core.versions import journal_entries  # noqa: E402

APP = "bench-rescale"
CONFIG = str(ROOT / "streams" / "data" / "demo.toml")


async def _setup(bootstrap: str, people: int, versions: int = 1, backlog: int = 0) -> int:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.structs import OffsetAndMetadata

    cfg = load_config(CONFIG)
    rec = record_offline(list(generate(people=people, seed=5, bad_ratio=0.0)), cfg, partitions=4)
    sources = [entry for _, _, k, v in rec.journal for _, entry in journal_entries(k, v)
               if type(entry) is EventEntry] if backlog else []
    changelogs = [changelog_topic(APP, t) for t in TABLES]
    await ensure_topics_async(bootstrap, 4, ALL_TOPICS)
    await ensure_topics_async(bootstrap, 4, changelogs,
                              configs={t: {"cleanup.policy": "compact"} for t in changelogs})
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=1 << 20)
    await producer.start()
    ends: dict[int, int] = {}
    ends_of: dict[tuple[str, int], int] = {}  # of the input partitions the journal names
    moved = 0
    try:
        pending = []
        for p, o, k, v in rec.journal:
            pending.append(await producer.send(topics.JOURNAL, v, key=k, partition=p))
            ends[p] = o + 1
        for _ in range(versions):
            for k, v in rec.table.items():
                pending.append(await producer.send(changelogs[0], v, key=k,
                                                   partition=partition_for_key(k, 4)))
        lines: dict[bytes, list[bytes]] = {}
        for t, p, _o, k, v in rec.outputs:
            pending.append(await producer.send(t, v, key=k, partition=p))
            if k is not None:
                lines.setdefault(k, []).append(v + b"\n")
        for k, vs in lines.items():
            pending.append(await producer.send(changelogs[2], b"".join(vs), key=k,
                                               partition=partition_for_key(k, 4)))
        # With a backlog: the inputs the journal holds, at the offsets it names, and after them
        # the events of `backlog` other people, not decided yet.
        for entry in sources:
            pending.append(await producer.send(entry.topic, entry.value,
                                               key=msgspec.json.decode(entry.value)["person_id"]
                                               .encode(), partition=entry.partition))
            ends_of[(entry.topic, entry.partition)] = entry.offset + 1
        for line in generate(people=backlog, seed=6, bad_ratio=0.0) if backlog else ():
            ev = msgspec.json.decode(line)
            key = ev["person_id"].encode()
            pending.append(await producer.send(topics.TOPIC_BY_TYPE[ev["type"]], line, key=key,
                                               partition=partition_for_key(key, 4)))
            moved += 1
        await producer.flush()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=APP,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tps = {TopicPartition(topics.JOURNAL, p): OffsetAndMetadata(e, "") for p, e in ends.items()}
        tps.update({TopicPartition(t, p): OffsetAndMetadata(e, "")
                    for (t, p), e in ends_of.items()})
        consumer.assign(list(tps))
        await consumer.commit(tps)
    finally:
        await consumer.stop()
    return len(rec.journal), moved


@contextlib.contextmanager
def kafka(bootstrap: str | None) -> Iterator[str]:
    """`bootstrap` (an empty Kafka), or an Apache Kafka started for the run and stopped after."""
    if bootstrap:
        yield bootstrap
        return
    from devtools.brokers import make_broker

    broker = make_broker("kafka", die_with_parent=True).start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


def set_up(bootstrap: str, people: int, versions: int, backlog: int = 0) -> tuple[int, int]:
    """The history written to the topics (`_setup`) in another process, so that the peak memory
    a bench prints is its own command's alone; the count of journal entries, and of input
    records not decided yet (with `backlog`)."""
    out = subprocess.run([sys.executable, __file__, "--setup-only", "--people", str(people),
                          "--versions", str(versions), "--backlog", str(backlog),
                          "--bootstrap", bootstrap],
                         check=True, capture_output=True, text=True).stdout.split()
    return int(out[-2]), int(out[-1])


def baseline_in_a_process(script: str, bootstrap: str) -> float:
    """The seconds `script --baseline-only` prints (its read holds every record it reads)."""
    return float(subprocess.run([sys.executable, script, "--baseline-only", "--bootstrap",
                                 bootstrap], check=True, capture_output=True,
                                text=True).stdout.split()[-1])


def add_history_arguments(ap: argparse.ArgumentParser) -> None:
    """The history a bench sets up (`set_up`), and the Kafka it uses (`kafka`)."""
    ap.add_argument("--people", type=int, default=20000)
    ap.add_argument("--bootstrap", help="an empty Kafka (default: start one)")
    ap.add_argument("--versions", type=int, default=1,
                    help="records of each persons row in its changelog (not compacted yet)")


def main() -> int:
    ap = argparse.ArgumentParser()
    add_history_arguments(ap)
    ap.add_argument("--setup-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--baseline-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--backlog", type=int, default=0,
                    help="people whose events wait in the input topics, not decided yet")
    args = ap.parse_args()
    if args.setup_only:
        print(*asyncio.run(_setup(args.bootstrap, args.people, args.versions, args.backlog)))
        return 0
    if args.baseline_only:
        t0 = time.perf_counter()
        asyncio.run(read_topics(args.bootstrap, [topics.JOURNAL], timeout=3600))
        print(time.perf_counter() - t0)
        return 0
    with kafka(args.bootstrap) as bootstrap:
        cfg = load_config(CONFIG)
        entries, backlog = set_up(bootstrap, args.people, args.versions, args.backlog)
        # The baseline in another process too: its read holds the whole journal's records.
        baseline = baseline_in_a_process(__file__, bootstrap)
        marks: list[tuple[float, str]] = []
        print("each line: the time since the line before (the step it closes), then the line")

        def say(line: str) -> None:
            now = time.perf_counter()
            took = f"{now - marks[-1][0]:6.2f} s" if marks else "  0.00 s"
            marks.append((now, line))
            print(f"  +{took}  {line}", flush=True)

        with tempfile.TemporaryDirectory() as tmp:
            r = Rescaler(bootstrap, APP, 8, cfg.version, Path(tmp) / "state", say=say,
                         timeout=3600)
            t0 = time.perf_counter()
            marks.append((t0, "start"))
            summary = asyncio.run(r.run())
            total = time.perf_counter() - t0
            # The state file, and the snapshot database beside it (a directory).
            state_mib = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file()) / (1 << 20)
        scale = 1_000_000 / args.people
        print(f"people {args.people:,}, journal entries {entries:,}, persons rows written "
              f"{args.versions} time(s) each, input records not decided yet {backlog:,}")
        print(f"baseline, read the journal once: {baseline:.2f} s")
        print(f"rescale 4 -> 8: {total:.2f} s = {total / baseline:.1f} x the baseline; "
              f"per million people ~{total * scale / 60:.0f} min (linear)")
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak memory of the rescale: {rss:,.0f} MiB; state file and snapshot "
              f"{state_mib:,.0f} MiB")
        print(summary.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
