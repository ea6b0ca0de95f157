#!/usr/bin/env python
"""How long `mynapoint takeover --to quix` takes and how much memory it holds, against reading the
state changelogs once in the same run.

    .venv/bin/python bench/bench_takeover.py --people 20000                 # starts its own Kafka
    .venv/bin/python bench/bench_takeover.py --people 20000 --bootstrap HOST:PORT  # an empty one

A script, not a test: timings depend on the machine. The set-up is bench_rescale.py's (in a
process of its own, so that the peak printed is the takeover's alone): a history of `--people`
decided offline at 4 partitions, its journal, `persons` table (`--versions` records a person) and
timeline written to the topics of a stopped Faust deployment. Measured:

- baseline: reading the three Faust changelogs once (`clients.history.read_topics`), in a
  process of its own;
- takeover faust -> quix: the whole command (`clients.takeover.Takeover`).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_rescale import (  # noqa: E402
    APP,
    add_history_arguments,
    baseline_in_a_process,
    kafka,
    set_up,
)

from clients.history import read_topics  # noqa: E402
from clients.takeover import Takeover  # noqa: E402
from schemas.topics import TABLES, changelog_topic  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    add_history_arguments(ap)
    ap.add_argument("--baseline-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    changelogs = [changelog_topic(APP, t) for t in TABLES]
    if args.baseline_only:
        t0 = time.perf_counter()
        asyncio.run(read_topics(args.bootstrap, changelogs, timeout=3600))
        print(time.perf_counter() - t0)
        return 0
    with kafka(args.bootstrap) as bootstrap:
        set_up(bootstrap, args.people, args.versions)
        baseline = baseline_in_a_process(__file__, bootstrap)

        def say(line: str) -> None:
            print(f"  {line}", flush=True)

        t0 = time.perf_counter()
        summary = asyncio.run(Takeover(bootstrap, APP, "quix", say=say, timeout=3600).run())
        total = time.perf_counter() - t0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"people {args.people:,}, persons rows written {args.versions} time(s) each")
        print(f"baseline, read the changelogs once: {baseline:.2f} s")
        print(f"takeover faust -> quix: {total:.2f} s = {total / baseline:.1f} x the baseline")
        print(f"peak memory of the takeover: {rss:,.0f} MiB")
        print(summary.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
