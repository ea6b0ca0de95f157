"""What event-time alignment holds while one worker catches up on a backlog, with and without the
bound on held records (`--max-held-per-partition`), in the same run.

Not a test (no thresholds): a measurement, printed for docs/BENCHMARKS.md. For each bound, a fresh
local broker gets the same generated history on the six input topics, then one Faust worker
starts on it and decides it all. The worker's own metrics are read every 0.2 s: the largest
`mynapoint_aligner_held` and `mynapoint_aligner_paused_partitions` seen, and at the end the pauses,
re-reads and journal entries seen again it counted; with the peak resident memory of the worker process (VmHWM) and the
time from start to the last decision. The baseline is the worker without a bound (a bound larger
than the history), measured in the same run.

Usage: .venv/bin/python bench/bench_held.py [--people N] [--bounds N ...] [--engine tansu|kafka]
                                           [--logs DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_pipeline import (  # noqa: E402
    WORKER_TOPICS,
    _history,
    _peak_mb,
    loaded_broker,
    worker_command,
)
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from clients.connect import free_port  # noqa: E402

#: How often the worker's metrics are read (seconds).
SAMPLE_EVERY = 0.2


@dataclass(frozen=True)
class Catchup:
    seconds: float
    peak_held: float
    peak_paused: float
    pauses: float
    rereads: float
    repeats: float
    peak_mb: float


def _metrics(port: int) -> dict[str, float]:
    """Every metric of the worker, summed over its labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


def catch_up(lines: list[bytes], bound: int, engine: str, log: Path | None = None) -> Catchup:
    """One worker deciding `lines` with `bound`; its output goes to `log` (or nowhere)."""
    with loaded_broker(lines, WORKER_TOPICS, engine) as (broker, tmp), \
            open(log or os.devnull, "wb") as out:
        port = free_port()
        cmd = worker_command(broker.bootstrap, os.path.join(tmp, "w"), broker.worker_flags,
                             "--metrics-port", str(port), "--max-held-per-partition", str(bound))
        worker = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        start = time.monotonic()
        peak_held = peak_paused = 0.0
        seen: dict[str, float] = {}
        try:
            while seen.get("mynapoint_decisions_total", 0) < len(lines):
                if time.monotonic() - start > 1800:
                    raise SystemExit(f"timed out: {seen.get('mynapoint_decisions_total', 0):.0f}"
                                     f" of {len(lines)} decided")
                if worker.poll() is not None:
                    raise SystemExit(f"the worker exited with {worker.returncode}")
                time.sleep(SAMPLE_EVERY)
                try:
                    seen = _metrics(port)
                except OSError:
                    continue  # not serving yet
                peak_held = max(peak_held, seen.get("mynapoint_aligner_held", 0.0))
                peak_paused = max(peak_paused,
                                  seen.get("mynapoint_aligner_paused_partitions", 0.0))
            took = time.monotonic() - start
            return Catchup(took, peak_held, peak_paused,
                           seen.get("mynapoint_aligner_pauses_total", 0.0),
                           seen.get("mynapoint_rereads_total", 0.0),
                           seen.get("mynapoint_redelivered_entries_total", 0.0),
                           _peak_mb(worker.pid))
        finally:
            worker.terminate()
            worker.wait(timeout=60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--people", type=int, default=15000)
    ap.add_argument("--bounds", type=int, nargs="+", default=[2000],
                    help="--max-held-per-partition values to measure (default: 2000)")
    ap.add_argument("--engine", choices=("tansu", "kafka"), default="tansu")
    ap.add_argument("--logs", type=Path, metavar="DIR",
                    help="keep each worker's log there (worker-<bound>.log)")
    args = ap.parse_args()
    if args.logs is not None:
        args.logs.mkdir(parents=True, exist_ok=True)

    def log(bound: str) -> Path | None:
        return None if args.logs is None else args.logs / f"worker-{bound}.log"

    lines = _history(args.people)
    print(f"{len(lines):,} events for {args.people:,} people, one worker, {args.engine}",
          flush=True)
    base = catch_up(lines, 10 * len(lines), args.engine, log("none"))
    print(f"no bound: decided in {base.seconds:.0f} s; held at most {base.peak_held:,.0f}; "
          f"re-reads {base.rereads:.0f} ({base.repeats:,.0f} entries again); peak memory "
          f"{base.peak_mb:,.0f} MB", flush=True)
    for bound in args.bounds:
        run = catch_up(lines, bound, args.engine, log(str(bound)))
        print(f"--max-held-per-partition {bound}: decided in {run.seconds:.0f} s "
              f"({run.seconds / base.seconds:.2f} of no bound); held at most "
              f"{run.peak_held:,.0f} ({run.peak_held / base.peak_held:.2f}); paused at most "
              f"{run.peak_paused:.0f} partitions, {run.pauses:.0f} pauses; re-reads "
              f"{run.rereads:.0f} ({run.repeats:,.0f} entries again); peak memory "
              f"{run.peak_mb:,.0f} MB "
              f"({run.peak_mb / base.peak_mb:.2f})", flush=True)


if __name__ == "__main__":
    main()
