#!/usr/bin/env python
"""How many bytes the `persons` table stores per person: the ledger record, old layout and new.

    .venv/bin/python bench/bench_footprint.py                  # measure and print
    .venv/bin/python bench/bench_footprint.py --update-docs    # also record in docs/BENCHMARKS.md

No broker: the demo history (`devtools.demo.generate`, 2,000 people, seed 7 by default, demo
configuration) goes through `streams.audit.replay.record_offline`, which does in memory what the
pipeline does (intake journals each valid line with its source, the ledger folds the journal with
`streams.core.ledger.fold`, claims are answered through the journal). What is measured is each
person's last record as the ledger stores it (msgpack, the `persons` table value), in one run:

- **v1** (before): the layout of LEDGER_VERSION 1, encoded from the same records
  (`streams.core.versions.ledger_record_v1`): the outcomes of the last 32 entries as JSON lines;
- **v2, no offsets**: the current layout when the fold is not told the journal offsets (replay,
  tests): the same 32 entries, packed;
- **v2, commit every N**: the current layout as the worker stores it: the ledger folds each entry
  with its journal offset and the partition's committed offset, and commits every N journal
  records. The worker commits every `broker_commit_every` (10,000) records or every
  `broker_commit_interval` (1 s) if sooner: about 2,400 records at the rate measured for one
  worker in BENCHMARKS.md (2,042 events/s, 1.18 journal records per event), so 2,500 is the
  cadence of today's worker. The memory then holds only the entries of the last commit interval.

Sizes are deterministic for a given history (no timing is involved), so one run is enough.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_simulate import commit, record_row, row_start  # noqa: E402

from devtools.demo import DEMO_CONFIG, generate  # noqa: E402
from streams.audit.replay import record_offline  # noqa: E402
from streams.core import versions as V  # noqa: E402
from streams.core.config import load_config  # noqa: E402

SECTION_START = "<!-- bench:footprint:start -->"
SECTION_END = "<!-- bench:footprint:end -->"
TABLE_HEAD = (
    "| date | label: layout, memory | machine | python | msgspec | people | mean bytes | p50 | "
    "p99 | max | of v1 |\n"
    "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|"
)
SECTION_INTRO = "## The `persons` record per person (issue 13)\n"


def stats(sizes: list[int]) -> dict[str, float]:
    s = sorted(sizes)
    return {"mean": statistics.fmean(s), "p50": s[len(s) // 2],
            "p99": s[min(len(s) - 1, (99 * len(s)) // 100)], "max": s[-1]}


def measure(people: int, seed: int, commits: list[int]) -> list[tuple[str, dict[str, float], float]]:
    cfg = load_config(str(DEMO_CONFIG))
    lines = list(generate(people, seed))
    rows = []
    started = time.process_time()
    plain = record_offline(lines, cfg)
    cpu = time.process_time() - started
    records = [V.decode_ledger_record(raw) for raw in plain.table.values()]
    rows.append(("v1, last 32 entries as JSON lines",
                 stats([len(V.ledger_record_v1(r)) for r in records]), cpu))
    rows.append(("v2, no offsets: last 32 entries, packed",
                 stats([len(raw) for raw in plain.table.values()]), cpu))
    for n in commits:
        started = time.process_time()
        kept = record_offline(lines, cfg, commit_every=n)
        cpu = time.process_time() - started
        rows.append((f"v2, commit every {n:,} journal records",
                     stats([len(raw) for raw in kept.table.values()]), cpu))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--people", type=int, default=2000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--commit-every", type=int, nargs="+", default=[1, 2500, 10000],
                   help="journal records between the worker's commits (one row each)")
    p.add_argument("--update-docs", action="store_true", help="record the rows in BENCHMARKS.md")
    p.add_argument("--label", default=None, help="row label (default: the git commit)")
    args = p.parse_args(argv)

    rows = measure(args.people, args.seed, args.commit_every)
    base = rows[0][1]["mean"]
    print(f"{args.people:,} people, seed {args.seed}: bytes per person in the `persons` table")
    print(f"  {'layout, memory':44s} {'mean':>7s} {'p50':>6s} {'p99':>6s} {'max':>6s} "
          f"{'of v1':>6s}  fold CPU s")
    for name, s, cpu in rows:
        print(f"  {name:44s} {s['mean']:7.0f} {s['p50']:6.0f} {s['p99']:6.0f} {s['max']:6.0f} "
              f"{s['mean'] / base:6.3f}  {cpu:.2f}")
    if args.update_docs:
        label = args.label or commit()
        for name, s, _cpu in rows:
            row_label = f"{label}: {name}"
            row = (f"{row_start(row_label)} {args.people:,} | {s['mean']:,.0f} | "
                   f"{s['p50']:,.0f} | {s['p99']:,.0f} | {s['max']:,.0f} | "
                   f"{s['mean'] / base:.3f} |")
            record_row(row, row_label, SECTION_START, SECTION_END, TABLE_HEAD, SECTION_INTRO)
    return 0


if __name__ == "__main__":
    sys.exit(main())
