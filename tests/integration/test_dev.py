"""`mynapoint dev`, the README's main command (devtools/dev.py), end to end: broker, worker, demo
feed and summary, and where to look (metrics, the local Prometheus); a worker that cannot start
ends the command at once with its reason; SIGTERM leaves no broker, worker or Prometheus behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from clients.connect import free_port
from devtools.demo import generate
from devtools.prometheus import PACKAGED_PORT
from streams.audit.simulate import run
from streams.core.config import load_config
from tests.promtools import require

ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = str(ROOT / "streams" / "data" / "demo.toml")


def dev(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", "dev", "--people", "200", "--seed", "7",
            "--metrics-port", "0", *args]


def child_pids(pid: int) -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and _parent(int(p)) == pid]


def test_dev_runs_the_demo_and_prints_the_summary(broker_engine, worker_engine):
    metrics_port = free_port()
    done = subprocess.run(dev("--exit", "--engine", broker_engine, "--worker", worker_engine,
                              "--web-port", str(free_port()),
                              "--metrics-port", str(metrics_port)), cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    # Where to look: the worker's metrics and the local Prometheus (`./run setup` installs it).
    require("prometheus")
    assert f"metrics     http://127.0.0.1:{metrics_port}/metrics" in done.stderr
    prometheus = re.search(r"prometheus  http://127\.0\.0\.1:(\d+) ", done.stderr)
    assert prometheus and int(prometheus.group(1)) != PACKAGED_PORT, done.stderr[-3000:]
    assert "ops/grafana/dashboards/mynapoint.json" in done.stderr
    # The demo feed's valid events, all decided; the summary agrees with simulate on them.
    cfg = load_config(DEMO_CONFIG)
    outcomes = [o for batch in run(list(generate(people=200, seed=7, bad_ratio=0.002)), cfg)
                for o in batch]
    decisions = sum(1 for o in outcomes if type(o).__name__ == "Decision")
    assert f"decisions: {decisions:,}" in done.stdout
    assert "decisions by type and reason:" in done.stdout
    assert "points by campaign" in done.stdout
    assert re.search(rf"\n{decisions:,} events decided in [0-9.,]+ s", done.stdout)


def test_a_worker_that_cannot_start_ends_dev_at_once_saying_why():
    # With a timeout of a day, only noticing the worker's exit can end the command at all. The
    # worker inherits a setting that `dev` itself does not check (its own options it refuses
    # before starting anything), and refuses to start.
    env = {**os.environ, "MYNAPOINT_IDLE_WAIT": "-1"}
    done = subprocess.run(dev("--exit", "--web-port", str(free_port()), "--timeout", "86400"),
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1
    assert "the worker stopped (exit code" in done.stderr
    assert "--idle-wait (MYNAPOINT_IDLE_WAIT) must be seconds, 0 or more; got '-1'" in done.stderr


def test_sigterm_leaves_no_broker_or_worker_behind(broker_engine):
    require("prometheus")
    proc = subprocess.Popen(dev("--engine", broker_engine, "--web-port", str(free_port()),
                                "--metrics-port", str(free_port())),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(children := child_pids(proc.pid)) < 3:  # the broker, the worker, Prometheus
            assert proc.poll() is None, proc.stderr.read()[-2000:] if proc.stderr else ""
            assert time.monotonic() < deadline, children
            time.sleep(0.2)  # polling a condition
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=90)
        for pid in children:
            deadline = time.monotonic() + 30
            while _alive(pid):
                assert time.monotonic() < deadline, f"process {pid} outlived mynapoint dev"
                time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
