"""Worker processes for the integration tests, and how to read what the pipeline published."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from clients.connect import free_port, run_blocking
from devtools.brokers import BrokerProcess
from schemas import topics
from schemas.codec import EVENT_DECODER, OUTCOME_ENCODER, BadInput, decode_event
from schemas.journal import EventEntry
from schemas.settings import WORKER_MODULES
from schemas.topics import partition_for_key
from streams.core.config import RulesConfig
from streams.core.engine import Engine
from streams.core.ledger import mark_late
from streams.core.versions import journal_entries
from tests.builders import card

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """`python -m agents.worker` (or the `engine`'s worker) against the test broker; killable with
    any signal."""

    def __init__(self, broker: BrokerProcess, data_dir: Path, log_dir: Path, *,
                 partitions: int = 4, config: str | None = None, app_id: str = "mynapoint-it",
                 extra_args: list[str] | None = None, engine: str = "faust",
                 module: str | None = None):
        self.bootstrap = broker.bootstrap
        # `--tansu-compat` on Tansu only: on Apache Kafka the worker runs as in production.
        self.broker_flags = list(broker.worker_flags)
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.partitions = partitions
        self.config = config
        self.app_id = app_id
        self.extra_args = list(extra_args or [])
        self.engine = engine
        # The worker's module: the engine's, or a test's variant of it.
        self.module = module or WORKER_MODULES[engine]
        # The status API's port of the current run (a fresh free port on every start).
        self.web_port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> WorkerProcess:
        self.starts += 1
        log = open(self.log_dir / f"worker-{self.starts}.log", "wb")  # noqa: SIM115
        self.web_port = free_port()
        cmd = [
            sys.executable, "-m", self.module,
            "--bootstrap", self.bootstrap,
            "--data-dir", str(self.data_dir),
            "--partitions", str(self.partitions),
            "--web-port", str(self.web_port),
            "--metrics-port", "0",
            "--app-id", self.app_id,
            *self.broker_flags,
        ]
        if self.config:
            cmd += ["--config", self.config]
        cmd += self.extra_args
        self.process = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def assert_alive(self) -> None:
        assert self.process is not None and self.process.poll() is None, (
            f"the worker died; see {self.log_dir}"
        )

    def log_tail(self, n: int = 40) -> str:
        path = self.log_dir / f"worker-{self.starts}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


def refused_start(broker: BrokerProcess, tmp_path: Path, **kwargs: Any) -> str:
    """Starts a worker (`WorkerProcess` keyword arguments) that must refuse to start: asserts
    that it exits with status 2, and returns the end of its log (what it said). Its data and log
    folders are `data-refused` and `logs-refused` under `tmp_path`."""
    logs = tmp_path / "logs-refused"
    logs.mkdir()
    worker = WorkerProcess(broker, tmp_path / "data-refused", logs, **kwargs).start()
    assert worker.process is not None
    assert worker.process.wait(timeout=300) == 2, worker.log_tail()
    return worker.log_tail()


@contextlib.contextmanager
def worker_group(broker: BrokerProcess, tmp_path: Path, count: int,
                 **kwargs: Any) -> Iterator[list[WorkerProcess]]:
    """`count` started workers of one consumer group, each with its own data and log folder
    (`data-i`, `logs-i` under `tmp_path`); all stopped on the way out."""
    workers = []
    for i in range(1, count + 1):
        logs = tmp_path / f"logs-{i}"
        logs.mkdir()
        workers.append(WorkerProcess(broker, tmp_path / f"data-{i}", logs, **kwargs))
    try:
        for w in workers:
            w.start()
        yield workers
    finally:
        for w in workers:
            w.stop()


def produce_raw(bootstrap: str, topic: str, values: list[bytes]) -> None:
    """Sends values as they are, unvalidated, keyed by whatever person_id they seem to carry."""
    from aiokafka import AIOKafkaProducer

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            for v in values:
                try:
                    key = msgspec.json.decode(v).get("person_id")
                except Exception:  # noqa: BLE001 - not even JSON: no key
                    key = None
                await producer.send(topic, key=key.encode() if isinstance(key, str) else None,
                                    value=v)
            await producer.flush()
        finally:
            await producer.stop()

    run_blocking(send())


def card_on_2020_08_01(person: str) -> bytes:
    """A card issued to `person` on 2020-08-01 (applied 2020-07-01), as a JSON line."""
    return msgspec.json.encode(card(person, "2020-08-01T09:00:00+09:00", applied="2020-07-01",
                                    serial="C", expires="2030-01-01T00:00:00+09:00",
                                    event_id=f"{person}-c"))


def is_valid_line(line: bytes) -> bool:
    """Whether `mynapoint produce` would send the line (a valid event)."""
    try:
        decode_event(line)
    except BadInput:
        return False
    return True


def partition_of(person_id: str, partitions: int = 4) -> int:
    """The partition a person's records go to: Kafka's default partitioner (murmur2 of the key)."""
    return partition_for_key(person_id.encode(), partitions)


def decode_records(records: list[Any]) -> list[dict[str, Any]]:
    return [msgspec.json.decode(r.value) for r in records]


def distinct_by_id(outcomes: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """First occurrence of each outcome id; asserts every repeat is an exact repeat."""
    seen: dict[str, dict[str, Any]] = {}
    repeats = 0
    out = []
    for o in outcomes:
        oid = o["outcome_id"]
        if oid in seen:
            assert seen[oid] == o, f"outcome id {oid} published with different content"
            repeats += 1
            continue
        seen[oid] = o
        out.append(o)
    return out, repeats


def journal_events_in_order(records: list[Any]) -> list[tuple[bytes, bool]]:
    """The events of the journal (value, late), per partition in offset order, repeats removed."""
    seen: set[tuple[str, int, int]] = set()
    values = []
    for r in records:
        for _, entry in journal_entries(r.key, r.value):
            if type(entry) is EventEntry:
                source = (entry.topic, entry.partition, entry.offset)
                if source not in seen:
                    seen.add(source)
                    values.append((entry.value, entry.late))
    return values


def reference_by_person(
    values: list[tuple[bytes, bool]], cfg: RulesConfig
) -> dict[str, list[dict[str, Any]]]:
    """What `simulate` decides for the events in the pipeline's own (journal) order; decisions on
    events that alignment released late carry the mark, as the ledger's do."""
    engine = Engine(cfg)
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for value, late in values:
        outcomes = engine.process(EVENT_DECODER.decode(value))
        for o in mark_late(outcomes) if late else outcomes:
            out[o.person_id].append(msgspec.json.decode(OUTCOME_ENCODER.encode(o)))
    return dict(out)


def by_person(outcomes: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for o in outcomes:
        out[o["person_id"]].append(o)
    return dict(out)


def wait_for(predicate, timeout: float, what: str, poll: float = 0.5, worker=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if worker is not None:
            worker.assert_alive()
        time.sleep(poll)  # polling a condition, not waiting on luck
    tail = f"; the worker's log ends with:\n{worker.log_tail(60)}" if worker is not None else ""
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{tail}")


OUTCOME_TOPICS = (topics.DECISIONS, topics.GRANTS, topics.ALERTS)
