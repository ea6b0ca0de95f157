"""The Quix Streams adapter's side of the runtime boundary, without a broker: intake's
acknowledgements become the stored offsets of the input topics (never past a held record, never
backwards, never for a partition revoked since), and the steps run to their end without an
event loop."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from confluent_kafka import KafkaException, TopicPartition

from quix_worker.app import PERSONS_TAG, TIMELINE_TAG, _Current, _store
from quix_worker.source import QuixSource, finish
from schemas import topics
from tests.builders import card


class FakeConsumer:
    def __init__(self, committed: dict[tuple[str, int], int], high: dict[tuple[str, int], int],
                 low: dict[tuple[str, int], int | KafkaException] | None = None):
        self._committed, self._high, self._low = committed, high, low or {}
        self.seeks: list[tuple[str, int, int]] = []
        self.asked_low: list[tuple[str, int]] = []

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self._committed.get((tp.topic, tp.partition),
                                                                           -1001))
                for tp in partitions]

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float | None = None,
                              cached: bool = False) -> tuple[int, int]:
        high = self._high.get((tp.topic, tp.partition), -1001)
        if cached:
            return -1001, high
        # A broker round trip: only at an assignment, for a partition with nothing committed.
        self.asked_low.append((tp.topic, tp.partition))
        low = self._low.get((tp.topic, tp.partition), 0)
        if isinstance(low, KafkaException):
            raise low
        return low, high

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))


def make(committed=None, high=None,
         low=None) -> tuple[QuixSource, FakeConsumer, list[tuple[str, int, int]]]:
    consumer = FakeConsumer(committed or {}, high or {}, low)
    stored: list[tuple[str, int, int]] = []
    return QuixSource(consumer, lambda t, p, o: stored.append((t, p, o))), consumer, stored


def test_acknowledgements_are_stored_once_each_and_never_backwards():
    source, _, stored = make()
    for offset in (3, 4, 4, 2, 5):
        source.acknowledge(source.token("a", 0, offset))
    assert stored == [("a", 0, 3), ("a", 0, 4), ("a", 0, 5)]


def test_a_token_read_before_its_partition_was_revoked_is_not_acknowledged():
    source, _, stored = make()
    before = source.token("a", 0, 7)
    other = source.token("a", 1, 7)
    assert source.revoked([TopicPartition("a", 0)]) == {("a", 0)}
    source.acknowledge(before)
    source.acknowledge(other)  # its partition stayed: acknowledged
    source.acknowledge(source.token("a", 0, 7))  # read again after the revocation
    assert stored == [("a", 1, 7), ("a", 0, 7)]


def test_starts_are_read_at_assignment_and_forgotten_at_revocation():
    # a/0 has a committed offset; a/1 has none: it starts at its first offset (the consumer's
    # `auto.offset.reset` earliest), 5 after retention; a/2's could not be read: unknown.
    source, consumer, _ = make(committed={("a", 0): 12},
                               low={("a", 1): 5, ("a", 2): KafkaException("timed out")})
    source.assigned([TopicPartition("a", 0), TopicPartition("a", 1), TopicPartition("a", 2)])
    assert [source.start("a", p) for p in range(3)] == [12, 5, None]
    assert consumer.asked_low == [("a", 1), ("a", 2)]  # not for a committed partition
    assert sorted(source.owned()) == [("a", 0), ("a", 1), ("a", 2)]
    source.revoked([TopicPartition("a", 0)])
    assert source.start("a", 0) is None
    assert sorted(source.owned()) == [("a", 1), ("a", 2)]


@pytest.mark.parametrize(("high", "expected"), [({("a", 0): 40}, 40), ({}, None),
                                                ({("a", 0): 0}, 0)])
def test_the_high_watermark_is_librdkafkas_cached_one(high, expected):
    source, _, _ = make(high=high)
    assert source.highwater("a", 0) == expected


def test_seek_moves_the_consumer():
    source, consumer, _ = make()
    finish(source.seek("a", 2, 9))
    assert consumer.seeks == [("a", 2, 9)]


def test_finish_runs_a_step_that_never_waits_and_refuses_one_that_does():
    ran: list[int] = []

    async def quick() -> None:
        ran.append(1)

    finish(quick())
    assert ran == [1]

    class Suspends:
        def __await__(self):
            yield

    async def waits() -> None:
        await Suspends()

    with pytest.raises(RuntimeError, match="waited"):
        finish(waits())


class FakeState:
    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get_bytes(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def set_bytes(self, key: bytes, value: bytes) -> None:
        self.data[key] = value


def test_the_ledgers_two_stores_share_the_persons_state_under_their_own_tags():
    current = _Current()
    persons, timeline = _store(current, PERSONS_TAG), _store(current, TIMELINE_TAG)
    state: Any = FakeState()
    current.state = state
    persons.write(b"p1", b"record")
    timeline.write(b"p1", b"head")
    assert (persons.read(b"p1"), timeline.read(b"p1"), persons.read(b"p2")) == (b"record", b"head",
                                                                                None)
    assert state.data == {PERSONS_TAG + b"p1": b"record", TIMELINE_TAG + b"p1": b"head"}


def test_each_entry_of_a_journal_batch_is_folded_in_its_own_persons_state(tmp_path):
    # Quix scopes the state it hands the journal's dataframe to the record's key (the batch's
    # first person); the ledger has each entry folded in its own person's state of the same
    # partition transaction, where a one-entry record of that person finds it. A real Quix
    # transaction over RocksDB, no broker.
    from quixstreams.state.rocksdb import RocksDBStorePartition

    from schemas.journal import JOURNAL_ENCODER, EventEntry, JournalBatch
    from streams.core.config import build_config
    from streams.pipeline.ledger import Ledger
    from streams.pipeline.outputs import Outputs
    from streams.pipeline.runtime import At

    async def send(topic: str, key: bytes | None, value: bytes) -> None:
        pass

    def entry(person: str, offset: int) -> EventEntry:
        return EventEntry(topic=topics.CARDS, partition=0, offset=offset, value=msgspec.json.encode(
            card(person, "2020-08-01T09:00:00+09:00", event_id=f"{person}-c")))

    partition = RocksDBStorePartition(path=str(tmp_path / "p0"))
    try:
        tx = partition.begin()
        current = _Current()
        ledger = Ledger(build_config({}), _store(current, PERSONS_TAG),
                        _store(current, TIMELINE_TAG), Outputs(send), scope=current.scope)
        current.record = current.state = tx.as_state(prefix=b"P1")
        batch = JournalBatch(persons=[b"P1", b"P2"], entries=[entry("P1", 0), entry("P2", 1)])
        finish(ledger.on_entry(b"P1", JOURNAL_ENCODER.encode(batch), At(topics.JOURNAL, 0, 7), 0))
        for person in (b"P1", b"P2"):
            assert tx.as_state(prefix=person).get_bytes(PERSONS_TAG + person) is not None
        assert tx.as_state(prefix=b"P1").get_bytes(PERSONS_TAG + b"P2") is None
    finally:
        partition.close()


def test_a_persons_record_is_found_by_its_key_in_the_state_changelog():
    # Replay and export read the Quix worker's journal state changelog: a person's record is the
    # key Quix builds from the record's key (the prefix), its separator and the state key.
    from quixstreams.state.metadata import SEPARATOR

    for person in (b"P0001", b"p|1", b"x"):
        assert topics.quix_person_of(person + SEPARATOR + PERSONS_TAG + person) == person
    assert topics.quix_person_of(b"P0001" + SEPARATOR + TIMELINE_TAG + b"P0001") is None
    assert topics.quix_person_of(b"P0001" + SEPARATOR + TIMELINE_TAG + b"P0001:3") is None
    assert topics.quix_person_of(b"P0001" + SEPARATOR + PERSONS_TAG + b"P0002") is None
    assert topics.quix_person_of(b"") is None
