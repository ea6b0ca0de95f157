"""`mynapoint dev`: the newcomer's one command.

Starts the local broker, creates the topics, starts a worker, feeds it a generated demo history of
thousands of people, shows progress until every event is decided, prints a readable summary
(decisions by reason, points by campaign), then keeps serving until interrupted. Where
`prometheus` is installed (`./run setup` installs it) it also starts a local Prometheus scraping
the worker with the rules of ops/alerts.yml, and prints where to look.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devtools.brokers import DEFAULT_ENGINE, ENGINES, BrokerError, make_broker
from devtools.brokers.process import stop_process
from devtools.progress import Progress
from schemas import topics
from schemas.settings import COUNT, ENV, SECONDS, port_type
from schemas.settings import ENGINES as WORKER_ENGINES

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / "streams" / "data" / "demo.toml"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--people", type=COUNT, default=3000, help="people in the demo feed (default 3000)")
    p.add_argument("--seed", type=int, default=7,
                   help="the demo feed's random seed: the same seed, the same feed (default 7)")
    p.add_argument("--partitions", type=COUNT, default=4,
                   help="partitions of the topics dev creates (default 4)")
    p.add_argument("--config", default=str(DEMO_CONFIG), help="rules configuration (demo catalog)")
    p.add_argument("--engine", choices=ENGINES, default=DEFAULT_ENGINE,
                   help="local broker: tansu (default: memory storage, starts at once) or kafka "
                   "(Apache Kafka from Maven Central; needs Java 17+ and Maven)")
    p.add_argument("--worker", choices=WORKER_ENGINES, default=None,
                   help="the worker's engine: faust or quix (Quix Streams, the `quix` extra); "
                   f"default ${ENV['engine'].var}, else faust")
    p.add_argument("--port", type=port_type("a free one"), default=None,
                   help="broker port (default, or 0: a free one)")
    p.add_argument("--metrics-port", type=port_type("no metrics"), default=9108,
                   help="the worker's Prometheus port (default: 9108; 0: no metrics)")
    p.add_argument("--web-port", type=port_type(None), default=6066,
                   help="the worker's status API port (default: 6066)")
    p.add_argument("--prometheus-port", type=port_type("a free one"), default=None,
                   help="port of the local Prometheus (default, or 0: a free one, never 9090)")
    p.add_argument("--no-prometheus", action="store_true",
                   help="do not start a local Prometheus even if one is installed")
    p.add_argument("--exit", action="store_true", help="stop after the summary instead of serving")
    p.add_argument("--timeout", type=SECONDS, default=900, help="seconds to wait for all decisions")


class DevFailure(Exception):
    """The demo cannot finish; the message says why (the worker's log tail is shown with it)."""


async def _follow(bootstrap: str, expected: int, timeout: float,
                  stopped: Callable[[], int | None] = lambda: None):
    """Reads every outcome until `expected` decisions are out, showing progress; `stopped()` is
    the worker's exit code once it has exited (then the demo cannot finish)."""
    from aiokafka import AIOKafkaConsumer

    from schemas.codec import OUTCOME_DECODER
    from streams.audit.summary import Summary

    summary = Summary()
    consumer = AIOKafkaConsumer(
        *topics.OUTPUT_TOPICS, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
        enable_auto_commit=False, group_id=None,
    )
    await consumer.start()
    started = time.monotonic()
    progress = Progress(expected)
    decisions = 0
    try:
        while decisions < expected:
            if (code := stopped()) is not None:
                raise DevFailure(f"the worker stopped (exit code {code}) after {decisions:,} of "
                                 f"{expected:,} decisions")
            if time.monotonic() - started > timeout:
                raise DevFailure(f"only {decisions:,} of {expected:,} decisions after "
                                 f"{timeout:g} s (--timeout)")
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                # Records, not distinct ids: a third copy of an event gets the very same decision
                # (same id) as the second, and it is an input decided all the same.
                outcomes = [OUTCOME_DECODER.decode(r.value) for r in records]
                decisions += sum(1 for r in records if r.topic == topics.DECISIONS)
                summary.observe(outcomes)
            progress.show(decisions)
        # Grants and alerts that follow the last decisions.
        batch = await consumer.getmany(timeout_ms=1500)
        for records in batch.values():
            summary.observe([OUTCOME_DECODER.decode(r.value) for r in records])
    finally:
        await consumer.stop()
    sys.stderr.write("\n")
    return summary, time.monotonic() - started


def _stop_worker(worker: subprocess.Popen[bytes] | None) -> None:
    if worker is not None:
        stop_process(worker)


def _local_prometheus(args: argparse.Namespace, work: Path) -> Any:
    """The local Prometheus to start for the worker, or None (saying why on stderr)."""
    from devtools.prometheus import LocalPrometheus

    if not args.metrics_port:
        print("  prometheus  not started (--metrics-port 0)", file=sys.stderr)
        return None
    if args.no_prometheus:
        return None
    if shutil.which("prometheus") is None:
        print("  prometheus  not installed, not started (./run setup installs Debian's "
              "prometheus package)", file=sys.stderr)
        return None
    return LocalPrometheus(work / "prometheus", [f"127.0.0.1:{args.metrics_port}"],
                           interval="5s", port=args.prometheus_port)


def run_dev(args: argparse.Namespace) -> int:
    from clients.admin import ALL_TOPICS, ensure_topics
    from clients.connect import run_blocking
    from clients.produce import produce_lines
    from devtools.demo import generate
    from streams.core.config import load_config

    cfg = load_config(args.config)
    work = Path(tempfile.mkdtemp(prefix="mynapoint-dev-"))
    broker = make_broker(args.engine, port=args.port)
    print(f"mynapoint dev: starting the local broker ({broker.describe()})...", file=sys.stderr)
    worker: subprocess.Popen[bytes] | None = None
    prom: Any = None

    def stop_now(signum: int, frame: object) -> None:
        # SIGTERM (a `timeout`, a service manager): stop the worker and the broker here and now.
        # Raising into whatever runs (an asyncio loop's shutdown, say) could hang there, and then
        # both would outlive this command.
        print("\nmynapoint dev: stopping (SIGTERM)", file=sys.stderr, flush=True)
        if prom is not None:
            prom.stop()
        _stop_worker(worker)
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
        sys.stdout.flush()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop_now)
    try:
        broker.start()
    except BrokerError as exc:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        shutil.rmtree(work, ignore_errors=True)
        print(f"mynapoint dev: {exc}", file=sys.stderr)
        return 2
    try:
        bootstrap = broker.bootstrap
        ensure_topics(bootstrap, args.partitions, ALL_TOPICS)
        log_path = work / "worker.log"
        metrics_at = (f"http://127.0.0.1:{args.metrics_port}/metrics" if args.metrics_port
                      else "off (--metrics-port 0)")
        print(f"  broker      {bootstrap}\n  worker      log {log_path}\n"
              f"  metrics     {metrics_at}", file=sys.stderr)
        # `mynapoint worker` itself, which picks the engine (--worker, else $MYNAPOINT_ENGINE).
        engine = ["--engine", args.worker] if args.worker else []
        worker = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "worker", *engine, "--bootstrap", bootstrap,
             "--data-dir", str(work / "data"), "--partitions", str(args.partitions),
             "--config", args.config, "--metrics-port", str(args.metrics_port or 0),
             "--web-port", str(args.web_port), *broker.worker_flags],
            cwd=ROOT, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        # Known to the SIGTERM handler before it starts: a signal while it starts stops it too.
        prom = _local_prometheus(args, work)
        if prom is not None:
            from devtools.prometheus import PrometheusError

            try:
                prom.start()
                print(f"  prometheus  {prom.url} (alerts of ops/alerts.yml: {prom.url}/alerts)",
                      file=sys.stderr)
            except PrometheusError as exc:
                print(f"  prometheus  not started: {exc}", file=sys.stderr)
                prom = None
        print(f"  dashboard   {ROOT / 'ops' / 'grafana' / 'dashboards' / 'mynapoint.json'} "
              "(Grafana; `docker compose up` provisions it)", file=sys.stderr)
        lines = list(generate(people=args.people, seed=args.seed, bad_ratio=0.002))
        print(f"mynapoint dev: feeding {len(lines):,} events for {args.people:,} people...",
              file=sys.stderr)
        report = run_blocking(produce_lines(lines, bootstrap, partitions=args.partitions))
        sent = sum(report.sent.values())
        print(f"  sent {sent:,} valid events; `produce` refused {len(report.bad):,} bad lines "
              "(a producer that skips validation would see them in mynapoint.deadletter)",
              file=sys.stderr)
        try:
            summary, took = asyncio.run(_follow(bootstrap, sent, args.timeout, worker.poll))
        except DevFailure as exc:
            tail = log_path.read_text(errors="replace").splitlines()[-25:]
            print(f"\nmynapoint dev: {exc}. The worker's last log lines:\n  "
                  + "\n  ".join(tail), file=sys.stderr)
            return 1
        print(summary.render(cfg))
        print(f"\n{sent:,} events decided in {took:,.1f} s "
              f"({sent / max(took, 1e-6):,.0f} events/s end to end, including worker start-up)")
        if args.exit:
            return 0
        where = f"metrics {metrics_at}" + (f", Prometheus {prom.url}" if prom is not None else "")
        print(f"\nServing ({where}). Produce more with: mynapoint produce --bootstrap "
              f"{bootstrap} FILE.jsonl\nCtrl-C to stop.", file=sys.stderr)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if prom is not None:
            prom.stop()
        _stop_worker(worker)
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
