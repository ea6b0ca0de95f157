"""Tansu's ListOffsets(latest) bug and the `agents.faust_private` workaround, on the real broker.

If `test_tansu_end_offsets_bug_is_present` starts failing because end_offsets() is right, the
broker was fixed: the workaround is then a no-op (it still returns the right answer) and can go.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from agents.faust_private import (
    is_patched,
    patch_for_tansu,
    patch_from_env,
    unpatch_for_tansu,
)
from clients.admin import ensure_topics
from clients.connect import run_blocking
from clients.end_offsets import corrected_end_offsets
from devtools.brokers import BrokerProcess

TIMEOUT = 20

# About one broker's bug: on Tansu only, but for the check that Apache Kafka does not have it.
pytestmark = pytest.mark.engines("tansu")


async def _send_batches(bootstrap: str, topic: str, batches: dict[int, list[int]]) -> None:
    """Sends, per partition, explicit record batches of the given sizes (one request each)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    await asyncio.wait_for(producer.start(), TIMEOUT)
    try:
        for partition, sizes in batches.items():
            for b, size in enumerate(sizes):
                batch = producer.create_batch()
                for i in range(size):
                    meta = batch.append(
                        key=f"k{i}".encode(), value=f"{b}-{i}".encode(), timestamp=None
                    )
                    assert meta is not None, "batch full"
                fut = await producer.send_batch(batch, topic, partition=partition)
                await asyncio.wait_for(fut, TIMEOUT)
    finally:
        await producer.stop()


async def _offsets(bootstrap: str, topic: str, partitions: int):
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await asyncio.wait_for(consumer.start(), TIMEOUT)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        await consumer._client.force_metadata_update()
        reported = await asyncio.wait_for(consumer.end_offsets(tps), TIMEOUT)
        corrected = await asyncio.wait_for(corrected_end_offsets(consumer, tps), TIMEOUT)
        beginning = await asyncio.wait_for(consumer.beginning_offsets(tps), TIMEOUT)
        patched = await asyncio.wait_for(_faust_highwaters(consumer, tps), TIMEOUT)
        return tps, reported, corrected, beginning, patched
    finally:
        await consumer.stop()


async def _faust_highwaters(consumer, tps):
    """Calls Faust's (possibly patched) AIOKafkaConsumerThread._highwaters on our consumer, as the
    consumer thread does for table recovery."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    thread = SimpleNamespace(
        consumer=SimpleNamespace(in_transaction=False),
        _ensure_consumer=lambda: consumer,
    )
    return await AIOKafkaConsumerThread._highwaters(thread, tps)


@pytest.fixture
def ten_in_one_batch(broker: BrokerProcess, unique_topic):
    """Partition 0: one batch of 10 records. Partition 1: empty. Partition 2: batches 3, 1, 4."""
    topic = unique_topic("changelog")
    ensure_topics(broker.bootstrap, 3, [topic], timeout=TIMEOUT)
    run_blocking(_send_batches(broker.bootstrap, topic, {0: [10], 2: [3, 1, 4]}))
    return topic


@pytest.fixture
def unpatched():
    unpatch_for_tansu()
    yield
    unpatch_for_tansu()


def test_tansu_end_offsets_bug_is_present(broker, ten_in_one_batch, unpatched) -> None:
    tps, reported, corrected, beginning, faust_hw = run_blocking(
        _offsets(broker.bootstrap, ten_in_one_batch, 3)
    )
    p0, p1, p2 = tps
    # Tansu: (first offset of the last batch) + 1.
    assert reported[p0] == 1
    assert reported[p1] == 0
    assert reported[p2] == 5  # batches at 0-2, 3, 4-7: last starts at 4
    # Unpatched, Faust's recovery target is that wrong answer.
    assert faust_hw == reported
    # The high watermark of a Fetch is right; so is ListOffsets(earliest).
    assert corrected == {p0: 10, p1: 0, p2: 8}
    assert beginning == {p0: 0, p1: 0, p2: 0}


@pytest.mark.engines("kafka")
def test_apache_kafka_end_offsets_are_right_without_the_patch(broker, ten_in_one_batch,
                                                              unpatched) -> None:
    # Why the worker runs without --tansu-compat on Apache Kafka: nothing to correct there.
    tps, reported, corrected, beginning, faust_hw = run_blocking(
        _offsets(broker.bootstrap, ten_in_one_batch, 3)
    )
    assert reported == corrected == faust_hw == {tps[0]: 10, tps[1]: 0, tps[2]: 8}
    assert beginning == {tps[0]: 0, tps[1]: 0, tps[2]: 0}


def test_patch_makes_faust_recovery_targets_right(broker, ten_in_one_batch, unpatched) -> None:
    assert not is_patched()
    assert patch_for_tansu() is True
    assert patch_for_tansu() is False  # idempotent
    assert is_patched()
    tps, reported, corrected, _, faust_hw = run_blocking(
        _offsets(broker.bootstrap, ten_in_one_batch, 3)
    )
    assert reported[tps[0]] == 1  # aiokafka itself is not patched
    assert faust_hw == corrected == {tps[0]: 10, tps[1]: 0, tps[2]: 8}
    assert unpatch_for_tansu() is True
    assert not is_patched()


def test_patch_keeps_the_exactly_once_branch(unpatched) -> None:
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    class FakeAiokafka:
        def last_stable_offset(self, tp):
            return 42

    patch_for_tansu()
    thread = SimpleNamespace(
        consumer=SimpleNamespace(in_transaction=True),
        _ensure_consumer=lambda: FakeAiokafka(),
    )
    got = run_blocking(AIOKafkaConsumerThread._highwaters(thread, ["tp"]))
    assert got == {"tp": 42}


def test_patch_from_env(unpatched) -> None:
    assert patch_from_env({}) is False
    assert not is_patched()
    assert patch_from_env({"MYNAPOINT_TANSU_COMPAT": "1"}) is True
    assert is_patched()


def test_faust_table_recovery_end_to_end(broker: BrokerProcess, unique_topic, tmp_path) -> None:
    """A Faust worker recovers a table whose changelog holds one batch of 10 updates: without the
    patch it stops after the first record (Tansu bug); with it, it gets all 10."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).with_name("_faust_recovery_app.py")
    root = Path(__file__).resolve().parents[2]
    results = {}
    for patch in ("0", "1"):
        app_id = unique_topic(f"app{patch}").replace(".", "-")
        changelog = f"{app_id}-t-changelog"
        ensure_topics(broker.bootstrap, 1, [changelog], timeout=TIMEOUT)
        run_blocking(_send_json_batch(broker.bootstrap, changelog, 10))
        out = tmp_path / f"{app_id}.json"
        proc = subprocess.run(
            [
                sys.executable,
                str(script),
                broker.bootstrap,
                app_id,
                patch,
                str(out),
                str(tmp_path / f"{app_id}-data"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=root,
        )
        assert proc.returncode == 0 and out.exists(), proc.stderr[-3000:]
        results[patch] = json.loads(out.read_text())
    expected = {f"k{i}": i for i in range(10)}
    assert len(results["0"]) < 10, "Tansu bug gone? Unpatched recovery got everything"
    assert results["1"] == expected


async def _send_json_batch(bootstrap: str, topic: str, n: int) -> None:
    """n table updates (Faust's json key/value serialization) in ONE record batch."""
    import json

    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    await asyncio.wait_for(producer.start(), TIMEOUT)
    try:
        batch = producer.create_batch()
        for i in range(n):
            assert (
                batch.append(
                    key=json.dumps(f"k{i}").encode(), value=json.dumps(i).encode(), timestamp=None
                )
                is not None
            )
        await asyncio.wait_for(await producer.send_batch(batch, topic, partition=0), TIMEOUT)
    finally:
        await producer.stop()
