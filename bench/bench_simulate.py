#!/usr/bin/env python
"""How fast `mynapoint simulate` runs, against the cost of merely parsing the same JSON lines.

    .venv/bin/python bench/bench_simulate.py                  # measure and print
    .venv/bin/python bench/bench_simulate.py --update-docs    # also record in docs/BENCHMARKS.md

A script, not a test: timings depend on the machine, so nothing here asserts a threshold.

The history (>= 1,000,000 events for 100,000 people by default) is generated once with
`devtools.demo` and cached under bench/out/ (gitignored). Then, in the same process, pinned to one
core, each measurement runs `--repeats` times over the same bytes held in memory, and the best
run counts (CPU time of this process, which other load on the machine inflates less than the
wall clock; both are printed):

- baseline: read the lines and decode each one with `msgspec.json.decode(line)`, untyped (dicts,
  no validation): the floor any JSON-lines consumer in Python pays;
- simulate: `streams.audit.simulate.simulate_to` with the demo configuration, the exact code path of
  `mynapoint simulate`: typed decoding and validation, dead letters, the rules, the cross-person
  claims, and every outcome encoded to JSON lines, written to a sink that discards them.

The ratio simulate/baseline is the figure of merit (1.0 would mean the rules cost nothing).
`--verify` first checks, on the same history, that the fast decoding path gives exactly what the
plain decoder gives and that `simulate_to` writes exactly the bytes of the straightforward loop.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import io
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools.demo import DEMO_CONFIG, write_history  # noqa: E402
from streams.audit.simulate import simulate_to  # noqa: E402
from streams.core.config import load_config  # noqa: E402

OUT_DIR = ROOT / "bench" / "out"
DOCS = ROOT / "docs" / "BENCHMARKS.md"
TABLE_START = "<!-- bench:results:start -->"
TABLE_END = "<!-- bench:results:end -->"
TABLE_HEAD = (
    "| date | label | machine | python | msgspec | events | baseline ev/s | simulate ev/s | ratio |\n"
    "|---|---|---|---|---|---:|---:|---:|---:|"
)


class NullSink:
    """A binary stream that counts what it is given and keeps nothing."""

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data: bytes) -> int:
        n = len(data)
        self.bytes += n
        return n

    def flush(self) -> None:
        pass


def history(people: int, seed: int, bad_ratio: float, regenerate: bool) -> Path:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"history-p{people}-s{seed}-b{bad_ratio}.jsonl"
    if regenerate or not path.exists():
        t0 = time.perf_counter()
        tmp = path.with_suffix(".jsonl.tmp")
        with open(tmp, "wb") as f:
            n = write_history(f, people=people, seed=seed, bad_ratio=bad_ratio)
        tmp.replace(path)
        print(f"generated {path.relative_to(ROOT)}: {n:,} lines in {time.perf_counter() - t0:.1f}s")
    return path


def pin_one_core() -> str:
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity)"
    cpus = sorted(os.sched_getaffinity(0))
    cpu = cpus[-1]
    os.sched_setaffinity(0, {cpu})
    return f"pinned to CPU {cpu}"


def run_baseline(data: bytes) -> int:
    decode = msgspec.json.decode
    errors = (msgspec.DecodeError,)
    n = 0
    for line in io.BytesIO(data):
        n += 1
        try:
            decode(line)
        except errors:
            pass
    return n


def run_floor(data: bytes, step: str) -> int:
    """Strictly less work than simulate, to show what the target leaves for the rules.

    - "typed": decode each line into its event with the plain validating decoder;
    - "fast": the same with `decode_event_fast`, simulate's decoder for clean lines;
    - "state": "fast", then the person's state looked up and stored back (no rules);
    - "outcome": "state", then one decision per valid line encoded (no rules, a fixed decision).
    """
    from schemas.codec import EVENT_DECODER, OUTCOME_ENCODER, decode_event_fast
    from schemas.outcomes import Decision

    decode = EVENT_DECODER.decode if step == "typed" else decode_event_fast
    errors = (msgspec.DecodeError, msgspec.ValidationError)
    states: dict[str, object] = {}
    stateful = step in ("state", "outcome")
    encode = OUTCOME_ENCODER.encode if step == "outcome" else None
    fixed = Decision(event_id="P0000001-001", person_id="P0000001", type="payment.recorded",
                     accepted=True, reason=None, outcome_id="0" * 20, rules_version="0" * 12)
    n = 0
    for line in io.BytesIO(data):
        n += 1
        try:
            ev = decode(line)
        except errors:
            continue
        if stateful:
            person = ev.person_id
            states[person] = states.get(person, n)
            if encode is not None:
                encode(fixed)
    return n


FLOORS = ("typed", "fast", "state", "outcome")


def run_simulate(data: bytes, cfg) -> int:  # type: ignore[no-untyped-def]
    sink = NullSink()
    simulate_to(io.BytesIO(data), sink, cfg)  # type: ignore[arg-type]
    return sink.bytes


def _decoded(decode, raw: bytes) -> tuple[object, ...]:  # type: ignore[no-untyped-def]
    try:
        return ("event", decode(raw))
    except Exception as exc:  # noqa: BLE001 - compared, not handled
        return ("error", type(exc), str(exc))


def verify(data: bytes, cfg) -> bool:  # type: ignore[no-untyped-def]
    """Differential check of the fast paths against the plain ones, on this history.

    Line by line, `decode_event_fast` must give what `EVENT_DECODER.decode` gives (the same event,
    or the same exception with the same message); and `simulate_to` must write exactly the bytes
    of the straightforward loop (plain decoder, `Engine.process`, collector on).
    """
    from schemas.codec import EVENT_DECODER, OUTCOME_ENCODER, decode_event_fast
    from streams.audit.simulate import dead_letter_for_line
    from streams.core.engine import Engine

    lines = data.split(b"\n")
    if data.endswith(b"\n"):
        lines.pop()
    differ = sum(
        1 for raw in lines if _decoded(EVENT_DECODER.decode, raw) != _decoded(decode_event_fast, raw)
    )
    print(f"  verify: decode_event_fast differs from EVENT_DECODER.decode on {differ} of "
          f"{len(lines):,} lines")
    engine = Engine(cfg)
    reference: list[object] = []
    for lineno, raw in enumerate(lines, 1):
        try:
            ev = EVENT_DECODER.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            reference.append(dead_letter_for_line(raw, lineno, exc))
            continue
        reference.extend(engine.process(ev))
    out = io.BytesIO()
    simulate_to(io.BytesIO(data), out, cfg)
    same = out.getvalue() == OUTCOME_ENCODER.encode_lines(reference)
    print(f"  verify: simulate_to output {'identical to' if same else 'DIFFERS from'} the plain loop's "
          f"({len(reference):,} outcomes)")
    return differ == 0 and same


def best_of(repeats: int, fn, *args) -> tuple[float, float, Any]:  # type: ignore[no-untyped-def]
    """The best CPU time and the best wall-clock time over `repeats` runs, and the last result."""
    best_cpu = best_wall = float("inf")
    result = None
    for _ in range(repeats):
        gc.collect()
        c0, w0 = time.process_time(), time.perf_counter()
        result = fn(*args)
        best_cpu = min(best_cpu, time.process_time() - c0)
        best_wall = min(best_wall, time.perf_counter() - w0)
    return best_cpu, best_wall, result


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} CPU {model}"


def row_start(label: str) -> str:
    """The cells every results row starts with: date, label, machine, Python, msgspec."""
    return (f"| {dt.date.today().isoformat()} | {label} | {machine()} | "
            f"{platform.python_version()} | {msgspec.__version__} |")


def commit() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "streams", "schemas"], cwd=ROOT,
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        return rev + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def record_row(row: str, label: str, start: str, end: str, head: str, section: str) -> None:
    """Adds `row` to the results table between the markers `start` and `end` in BENCHMARKS.md,
    replacing the row with the same label; creates the table (after `section`) if missing."""
    # Re-read right before writing: other benchmarks keep their own sections in the same file.
    text = DOCS.read_text(encoding="utf-8") if DOCS.exists() else "# Benchmarks\n"
    if start not in text:
        text = text.rstrip("\n") + f"\n\n{section}\n{start}\n{head}\n{end}\n"
    before, rest = text.split(start, 1)
    table, tail = rest.split(end, 1)
    rows = [ln for ln in table.strip().splitlines()[2:] if ln.strip()]
    # One row per label: a new measurement under the same label replaces the old one.
    rows = [ln for ln in rows if _cells(ln)[1:2] != [label]]
    rows.append(row)
    table = "\n".join([head, *rows])
    DOCS.write_text(f"{before}{start}\n{table}\n{end}{tail}", encoding="utf-8")
    print(f"recorded in {DOCS.relative_to(ROOT)}")


def update_docs(row: str, label: str) -> None:
    record_row(row, label, TABLE_START, TABLE_END, TABLE_HEAD,
               "## `mynapoint simulate` against parsing JSON\n")


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def history_arguments(p: argparse.ArgumentParser) -> None:
    """The options this script shares with bench_replay.py: which history, how to measure it."""
    p.add_argument("--people", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--bad-ratio", type=float, default=0.002)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--config", default=str(DEMO_CONFIG), help="rules configuration (TOML)")
    p.add_argument("--regenerate", action="store_true", help="regenerate the cached history")
    p.add_argument("--no-pin", action="store_true", help="do not pin the process to one core")
    p.add_argument("--update-docs", action="store_true",
                   help="add (or replace, for the same --label) a row in docs/BENCHMARKS.md")
    p.add_argument("--label", default=None, help="the row's label (default: the git commit)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    history_arguments(p)
    p.add_argument("--floors", action="store_true",
                   help="also measure what strictly less work than simulate costs (run_floor)")
    p.add_argument("--verify", action="store_true",
                   help="first check the fast paths against the plain ones on this history")
    args = p.parse_args(argv)

    path = history(args.people, args.seed, args.bad_ratio, args.regenerate)
    data = path.read_bytes()
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    if args.people >= 100_000 and lines < 1_000_000:
        print(f"warning: only {lines:,} lines", file=sys.stderr)
    cfg = load_config(args.config)
    if args.verify and not verify(data, cfg):
        return 1
    pinned = "not pinned" if args.no_pin else pin_one_core()
    print(f"{lines:,} lines ({len(data) / 1e6:.0f} MB) from {path.relative_to(ROOT)}; {pinned}; "
          f"best of {args.repeats}")

    t_base, w_base, n = best_of(args.repeats, run_baseline, data)
    assert n == lines, (n, lines)
    base = lines / t_base
    print(f"  baseline (msgspec.json.decode, untyped):  CPU {t_base:7.3f} s  {base:12,.0f} ev/s"
          f"   (wall {w_base:.3f} s)")
    t_sim, w_sim, out_bytes = best_of(args.repeats, run_simulate, data, cfg)
    sim = lines / t_sim
    print(f"  simulate (demo config, outcomes encoded): CPU {t_sim:7.3f} s  {sim:12,.0f} ev/s"
          f"   (wall {w_sim:.3f} s; {out_bytes / 1e6:.0f} MB of outcomes)")
    ratio = sim / base
    print(f"  ratio simulate/baseline: {ratio:.3f} (CPU time); {w_base / w_sim:.3f} (wall clock)")
    if args.floors:
        for step in FLOORS:
            t_f, _, n = best_of(args.repeats, run_floor, data, step)
            assert n == lines, (n, lines)
            print(f"  floor {step:8}: {t_f / lines * 1e6:5.2f} us/line, "
                  f"ratio {lines / t_f / base:.3f} of the baseline")

    if args.update_docs:
        label = args.label or commit()
        update_docs(row_start(label) + f" {lines:,} | {base:,.0f} | {sim:,.0f} | {ratio:.3f} |",
                    label)
    return 0


if __name__ == "__main__":
    sys.exit(main())
