#!/usr/bin/env python
"""How fast `mynapoint replay` rebuilds everyone from the journal, against `simulate` over the same
history, in the same run.

    .venv/bin/python bench/bench_replay.py                  # measure and print
    .venv/bin/python bench/bench_replay.py --update-docs    # also record in docs/BENCHMARKS.md

A script, not a test: timings depend on the machine. Target (issue 4): replay >= 0.5 x simulate.

The history is `devtools.demo.generate(people, seed, bad_ratio)` (cached under bench/out/, shared
with bench_simulate.py). Its journal is made offline with `streams.audit.replay.record_offline`, which
does what the live pipeline does, in memory: each valid line wrapped in an EventEntry (source
topic, partition, increasing offsets), folded by the ledger, cross-person claims answered through
the journal. That run is set-up, not measured. Then, in one process pinned to one core, best of
`--repeats`:

- simulate: `streams.audit.simulate.simulate_to` over the JSONL bytes held in memory (typed decoding and
  validation, the rules, the in-memory claims, every outcome encoded to JSON lines, discarded);
- replay: what `mynapoint replay` does after reading the topics: every stored journal entry
  (msgpack) decoded through `streams.core.versions`, folded into fresh in-memory ledger records with
  `streams.core.ledger.fold`, every outcome derived again;
- replay + compare: the same plus `streams.audit.replay.compare` against the published outcomes and the
  persons table (what the command reports on).

Rates are input events per second: the valid lines for both (replay also folds the claim answers
that simulate answers inline).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_simulate import (  # noqa: E402
    best_of,
    commit,
    history,
    history_arguments,
    pin_one_core,
    record_row,
    row_start,
    run_simulate,
)

from streams.audit.export import (  # noqa: E402
    History,
    Published,
    add_journal_records,
    decode_outcome,
    no_cyclic_gc,
    set_table_raw,
)
from streams.audit.replay import compare, record_offline, replay  # noqa: E402
from streams.core.config import load_config  # noqa: E402

DOCS = ROOT / "docs" / "BENCHMARKS.md"
SECTION_START = "<!-- bench:replay:start -->"
SECTION_END = "<!-- bench:replay:end -->"
TABLE_HEAD = (
    "| date | label | machine | python | msgspec | events | journal entries | simulate ev/s "
    "| replay ev/s | ratio | replay+compare ev/s | ratio |\n"
    "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"
)
SECTION_INTRO = """## Replay against simulate (issue 4)

`bench/bench_replay.py` measures `mynapoint replay`'s core against `mynapoint simulate` over the
same generated history, in one process pinned to one core, best of 3 interleaved rounds:

- simulate: `streams.audit.simulate.simulate_to` over the JSONL bytes in memory, outcomes encoded and
  discarded;
- replay: every stored journal entry (msgpack) decoded through `streams.core.versions` and folded with
  `streams.core.ledger.fold` into fresh state, every outcome derived again;
- replay + compare: the same plus `streams.audit.replay.compare` with the published outcomes and the
  persons table (what the command reports on).

The journal is made offline, not measured, by `streams.audit.replay.record_offline` (what the live
pipeline writes: events with their sources, the claims' answers); it and the published outcomes
are then frozen out of the garbage collector's way (`gc.freeze()`), so each run pays only for
what it allocates. Reading the topics is not included (aiokafka reads about 650k records/s from
Tansu on loopback, /work/shared/notes/BROKER.md). Rates are valid input events per second of
the process's CPU time (`time.process_time`, as in bench_simulate.py: the machine is shared).
Target: replay at 0.5 of simulate or better.

Where the time goes: the fold costs more per event than `simulate`'s loop because the ledger
decodes each event with the full validating decoder (`simulate` takes `schemas.codec`'s fast path
for clean lines), re-encodes the journal entry and encodes every outcome into the record's
redelivery memory. Replay suspends the cyclic garbage collector while it builds and folds a
history (`streams.audit.export.no_cyclic_gc`: the fold makes no reference cycles; without that, the
collector walking the growing history made replay about a third slower); `simulate` runs with the
default collector. Comparing with the published outcomes costs about as much again as the replay
(one dict per outcome, 1.4 outcomes per event, and every person's record decoded from the table).

    .venv/bin/python bench/bench_replay.py --update-docs              # 100,000 people
    .venv/bin/python bench/bench_replay.py --people 10000 --update-docs --label <name>
"""


def run_replay(journal, cfg):  # type: ignore[no-untyped-def]
    h = History()
    with no_cyclic_gc():  # as `clients.history.read_history` builds it
        add_journal_records(h, journal)
    return replay(h, cfg)


def run_replay_compare(journal, published, table, cfg):  # type: ignore[no-untyped-def]
    replayed = run_replay(journal, cfg)
    live = History()
    for key, raw in table.items():
        set_table_raw(live, "bench", key, raw)
    return compare(replayed, published, cfg, live=live.records)


def update_docs(row: str, label: str) -> None:
    record_row(row, label, SECTION_START, SECTION_END, TABLE_HEAD, SECTION_INTRO)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    history_arguments(p)
    args = p.parse_args(argv)

    path = history(args.people, args.seed, args.bad_ratio, args.regenerate)
    data = path.read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    cfg = load_config(args.config)
    t0 = time.perf_counter()
    recorded = record_offline(lines, cfg)
    journal = recorded.journal
    published = []
    for topic, partition, offset, _key, raw in recorded.outputs:
        obj, err = decode_outcome(raw)
        published.append(Published(topic, partition, offset, obj, err))
    events = sum(1 for _, _, _, raw in journal if raw[1:9] == b"\xa1k\xa5event")
    del lines
    print(f"{events:,} valid events of {len(data.splitlines()):,} lines, {len(journal):,} journal "
          f"entries; journal made in {time.perf_counter() - t0:.1f} s (not measured)")
    # The set-up (journal, published outcomes) stays out of the collector's way: frozen, it is not
    # scanned, so each measured run pays only for what it allocates itself, as the commands do.
    gc.collect()
    gc.freeze()
    pinned = "not pinned" if args.no_pin else pin_one_core()
    # Rounds interleave the three runs, so a change in the machine's load hits all of them alike.
    print(f"{pinned}; best of {args.repeats} interleaved rounds")
    t_sim = t_rep = t_cmp = float("inf")
    out_bytes, report = 0, None
    for _ in range(args.repeats):
        t, _, out_bytes = best_of(1, run_simulate, data, cfg)
        t_sim = min(t_sim, t)
        t, _, replayed = best_of(1, run_replay, journal, cfg)
        assert replayed.events == events, (replayed.events, events)
        del replayed
        t_rep = min(t_rep, t)
        t, _, report = best_of(1, run_replay_compare, journal, published, recorded.table, cfg)
        assert report.ok, report.render()
        t_cmp = min(t_cmp, t)
    sim, rep, cmp_rate = events / t_sim, events / t_rep, events / t_cmp
    print(f"  simulate         {t_sim:8.3f} s  {sim:12,.0f} ev/s  ({out_bytes / 1e6:.0f} MB of outcomes)")
    print(f"  replay           {t_rep:8.3f} s  {rep:12,.0f} ev/s  ratio {rep / sim:.3f}")
    print(f"  replay + compare {t_cmp:8.3f} s  {cmp_rate:12,.0f} ev/s  ratio {cmp_rate / sim:.3f}"
          f"  ({report.outcomes_compared:,} outcomes, {report.tables_compared:,} people compared)")
    verdict = "meets" if rep / sim >= 0.5 else "MISSES"
    print(f"  target replay >= 0.5 x simulate: {verdict}")

    if args.update_docs:
        label = args.label or commit()
        row = (
            f"{row_start(label)} {events:,} | {len(journal):,} | {sim:,.0f} | {rep:,.0f} | "
            f"{rep / sim:.3f} | {cmp_rate:,.0f} | {cmp_rate / sim:.3f} |"
        )
        update_docs(row, label)
    return 0


if __name__ == "__main__":
    sys.exit(main())
