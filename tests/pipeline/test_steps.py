"""The pipeline's steps (streams/pipeline/) on a stand-in engine: what any engine's adapter gets
from them, record by record. The engines themselves run the same steps in tests/integration."""

from __future__ import annotations

import asyncio
import time
from operator import itemgetter
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from schemas import topics
from schemas.codec import (
    OUTCOME_DECODER,
    UNREADABLE_CLAIM,
    UNREADABLE_JOURNAL_ENTRY,
    UNREADABLE_STATE,
)
from schemas.journal import (
    JOURNAL_BATCH_MAX,
    JOURNAL_DECODER,
    JOURNAL_ENCODER,
    ClaimRequest,
    EventEntry,
    JournalBatch,
)
from schemas.outcomes import DeadLetter, Decision
from streams.core.config import build_config
from streams.core.ledger import RECORD_ENCODER, fold
from streams.core.versions import journal_entries
from streams.pipeline import metrics
from streams.pipeline.claims import Claims
from streams.pipeline.intake import Intake
from streams.pipeline.ledger import ClaimWaits, Ledger
from streams.pipeline.outputs import Outputs
from streams.pipeline.rereads import STARVED_AFTER, STARVED_BEHIND_AFTER
from streams.pipeline.runtime import At, Store
from tests.builders import card, phase1_linked

CFG = build_config({"services": [{"id": "demo-pay", "name": "Demo Pay"}]})


class Sent:
    """The engine's `Send`, keeping what was sent."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes]] = []

    async def __call__(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.records.append((topic, key, value))

    def on(self, topic: str) -> list[tuple[bytes | None, bytes]]:
        return [(k, v) for t, k, v in self.records if t == topic]


class Source:
    """A consumer that has fetched nothing yet (no high watermarks, no starts known)."""

    def __init__(self) -> None:
        self.acked: list[Any] = []
        self.sought: list[tuple[str, int, int]] = []
        self.balancing = False
        self.assignment: list[tuple[str, int]] = []
        self.pauses: list[tuple[str, str, int]] = []
        # The consumer's positions (None: it cannot tell).
        self.positions: dict[tuple[str, int], int] = {}

    def highwater(self, topic: str, partition: int) -> int | None:
        return None

    async def position(self, topic: str, partition: int) -> int | None:
        return self.positions.get((topic, partition))

    def owned(self) -> list[tuple[str, int]]:
        return self.assignment

    def start(self, topic: str, partition: int) -> int | None:
        return None

    def passed_over(self, topic: str, partition: int, start: int, end: int) -> None:
        pass

    async def seek(self, topic: str, partition: int, offset: int,
                   after: int | None = None) -> None:
        self.sought.append((topic, partition, offset))

    def rebalancing(self) -> bool:
        return self.balancing

    def acknowledge(self, token: Any) -> None:
        self.acked.append(token)

    pausable = True

    def pause(self, topic: str, partition: int) -> None:
        self.pauses.append(("pause", topic, partition))

    def resume(self, topic: str, partition: int) -> None:
        self.pauses.append(("resume", topic, partition))


def dict_store() -> tuple[Store, dict[bytes, bytes]]:
    data: dict[bytes, bytes] = {}
    return Store(data.get, data.__setitem__), data


def line(person: str, at: str, event_id: str) -> bytes:
    return msgspec.json.encode(card(person, at, event_id=event_id))


# -- intake


def intake(idle_wait: float) -> tuple[Intake, Source, Sent]:
    source, sent = Source(), Sent()
    return Intake(source, Outputs(sent), idle_wait), source, sent


def test_intake_journals_and_acknowledges_once_nothing_can_come_earlier():
    step, source, sent = intake(idle_wait=0)
    asyncio.run(step.on_record(topics.CARDS, 0, 0, b"P1",
                               line("P1", "2020-08-01T09:00:00+09:00", "e1"), "t0"))
    [(key, value)] = sent.on(topics.JOURNAL)
    entry = JOURNAL_DECODER.decode(value)
    assert key == b"P1" and isinstance(entry, EventEntry)
    assert (entry.topic, entry.partition, entry.offset, entry.late) == (topics.CARDS, 0, 0, False)
    assert source.acked == ["t0"]


def test_a_held_record_holds_back_the_acknowledgement_of_a_later_dead_letter():
    # The bad record is dead-lettered at once, but acknowledging it before the held record
    # would let the engine commit past the held one.
    step, source, sent = intake(idle_wait=1000)

    async def run() -> None:
        await step.on_record(topics.CARDS, 0, 0, b"P1",
                             line("P1", "2020-08-01T09:00:00+09:00", "e1"), "t0")
        await step.on_record(topics.CARDS, 0, 1, b"P1", b"not json", "t1")

    asyncio.run(run())
    assert sent.on(topics.JOURNAL) == [] and len(sent.on(topics.DEADLETTER)) == 1
    assert source.acked == [] and step.aligner.held() == 1
    step.aligner.idle_wait = 0  # the silent sources go idle
    asyncio.run(step.release())
    assert len(sent.on(topics.JOURNAL)) == 1
    assert source.acked == ["t0", "t1"]


def test_a_release_waiting_on_a_send_keeps_the_journal_in_release_order():
    # The intake agent and the release timer are two tasks: one's release may wait in a send
    # (a full producer buffer) while the other's runs.
    source = Source()
    journal: list[str] = []
    gate = asyncio.Event()

    async def send(topic: str, key: bytes | None, value: bytes) -> None:
        entry = JOURNAL_DECODER.decode(value)
        if entry.offset == 0:
            await gate.wait()
        journal.append(f"{entry.topic}/{entry.offset}")

    step = Intake(source, Outputs(send), idle_wait=0)

    async def run() -> None:
        first = asyncio.create_task(step.on_record(
            topics.CARDS, 0, 0, b"P1", line("P1", "2020-08-01T09:00:00+09:00", "e1"), "t0"))
        await asyncio.sleep(0)  # released, waiting in its send
        second = asyncio.create_task(step.on_record(
            topics.CARDS, 0, 1, b"P1", line("P1", "2020-08-02T09:00:00+09:00", "e2"), "t1"))
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(first, second)

    asyncio.run(run())
    assert journal == [f"{topics.CARDS}/0", f"{topics.CARDS}/1"]
    assert source.acked == ["t0", "t1"]


def test_acknowledgements_wait_for_a_rebalance_to_end():
    step, source, sent = intake(idle_wait=0)
    source.balancing = True
    asyncio.run(step.on_record(topics.CARDS, 0, 0, b"P1",
                               line("P1", "2020-08-01T09:00:00+09:00", "e1"), "t0"))
    assert len(sent.on(topics.JOURNAL)) == 1 and source.acked == []
    source.balancing = False
    asyncio.run(step.release())
    assert source.acked == ["t0"]


def test_revoked_partitions_forget_what_they_held():
    step, source, _ = intake(idle_wait=1000)
    asyncio.run(step.on_record(topics.CARDS, 3, 0, b"P1",
                               line("P1", "2020-08-01T09:00:00+09:00", "e1"), "t0"))
    assert step.aligner.held() == 1
    step.revoked({(topics.CARDS, 3)})
    step.aligner.idle_wait = 0
    asyncio.run(step.release())
    assert step.aligner.held() == 0 and source.acked == []


def test_a_hole_in_a_source_is_sought_not_taken():
    step, source, sent = intake(idle_wait=0)

    async def run() -> None:
        await step.on_record(topics.CARDS, 0, 0, b"P1",
                             line("P1", "2020-08-01T09:00:00+09:00", "e1"), "t0")
        await step.on_record(topics.CARDS, 0, 2, b"P1",
                             line("P1", "2020-08-02T09:00:00+09:00", "e3"), "t2")

    asyncio.run(run())
    assert source.sought == [(topics.CARDS, 0, 1)]
    assert source.acked == ["t0"] and len(sent.on(topics.JOURNAL)) == 1
    asyncio.run(step.reseek())  # not read yet: sought again
    assert source.sought == [(topics.CARDS, 0, 1)] * 2


#: A microsecond past a deadline. The steps stamp records with `time.monotonic()`: `t0 + wait`
#: can round to just under `wait` after `t0` (one start value in about five thousand), so a test
#: that means "the wait has passed" asks a little after it.
TICK = 1e-6


def cards_waiting_for_links() -> tuple[Intake, Source, Sent, float]:
    """Intake after cards/0 delivered offset 0, while the broker holds offsets 0-1 of cards/0 and
    offset 0 of links/0; and when partition 0 woke (both sources are silent from then)."""
    step, source, sent = intake(idle_wait=0)
    ends = {(topics.CARDS, 0): 2, (topics.LINKS, 0): 1}
    source.highwater = lambda topic, partition: ends.get((topic, partition), 0)  # type: ignore[method-assign]
    asyncio.run(step.on_record(topics.CARDS, 0, 0, b"P1",
                               line("P1", "2020-08-01T09:00:00+09:00", "e1"), "t0"))
    return step, source, sent, step.aligner.partitions[0].woke


def test_a_source_that_stops_delivering_is_read_again_from_its_next_offset():
    step, source, sent, t0 = cards_waiting_for_links()
    assert sent.on(topics.JOURNAL) == []  # links has a record we have not read: c0 waits
    asyncio.run(step.reseek(now=t0 + STARVED_AFTER - 1))
    assert source.sought == []
    asyncio.run(step.reseek(now=t0 + STARVED_AFTER + TICK))
    assert sorted(source.sought) == [(topics.CARDS, 0, 1), (topics.LINKS, 0, 0)]
    asyncio.run(step.reseek(now=t0 + STARVED_AFTER + 1))  # not again before another wait
    assert len(source.sought) == 2
    asyncio.run(step.reseek(now=t0 + 2 * (STARVED_AFTER + TICK)))
    assert len(source.sought) == 4
    source.balancing = True  # no seeks during a rebalance
    asyncio.run(step.reseek(now=t0 + 4 * STARVED_AFTER))
    assert len(source.sought) == 4


def test_an_owned_partition_that_delivers_nothing_is_sought_where_it_resumes():
    step, source, sent = intake(idle_wait=0)
    source.assignment = [(topics.CARDS, 5), (topics.LINKS, 5), (topics.PAYMENTS, 6)]
    # cards/5 never fetched; links/5 fetched and empty; payments/6 fetched, records not delivered.
    known = {(topics.LINKS, 5): 0, (topics.PAYMENTS, 6): 4}
    source.highwater = lambda topic, partition: known.get((topic, partition))  # type: ignore[method-assign]
    asyncio.run(step.reseek(now=100.0))
    asyncio.run(step.reseek(now=100.0 + STARVED_AFTER - 1))
    assert source.sought == []
    asyncio.run(step.reseek(now=100.0 + STARVED_AFTER))
    # No start known: from offset 0.
    assert sorted(source.sought) == [(topics.CARDS, 5, 0), (topics.PAYMENTS, 6, 0)]
    asyncio.run(step.reseek(now=100.0 + STARVED_AFTER + 1))  # not again before another wait
    assert len(source.sought) == 2
    source.start = lambda topic, partition: 4 if partition == 6 else 7  # type: ignore[method-assign]
    asyncio.run(step.reseek(now=100.0 + 2 * STARVED_AFTER))
    # payments/6 is read up to its end by the committed offset: nothing more to read there.
    assert source.sought[2:] == [(topics.CARDS, 5, 7)]
    # A record delivered on partition 5: the starved check watches it from now on.
    asyncio.run(step.on_record(topics.CARDS, 5, 7, b"P1",
                               line("P1", "2020-08-01T09:00:00+09:00", "e1"), "t7"))
    known[(topics.CARDS, 5)] = 8
    asyncio.run(step.reseek(now=100.0 + 3 * STARVED_AFTER))
    assert len(source.sought) == 3
    # A partition taken away and given back starts afresh; no seeks during a rebalance.
    step.revoked({(topics.CARDS, 5), (topics.LINKS, 5)})
    del known[(topics.CARDS, 5)]
    asyncio.run(step.reseek(now=200.0))
    asyncio.run(step.reseek(now=200.0 + STARVED_AFTER - 1))
    assert len(source.sought) == 3
    source.balancing = True
    asyncio.run(step.reseek(now=200.0 + 2 * STARVED_AFTER))
    assert len(source.sought) == 3


def test_a_silent_source_the_consumer_has_not_come_to_is_behind_not_lost():
    # Catching up on a backlog, a consumer serves some sources long before others. A source
    # whose next record it has not handed over yet (its position is still there) is read again
    # only after the longer wait: a seek would throw away what the consumer fetched of it.
    assert STARVED_BEHIND_AFTER > STARVED_AFTER
    step, source, sent, t0 = cards_waiting_for_links()
    # cards handed over offset 1 (lost on the way); links has not come to offset 0 yet.
    source.positions = {(topics.CARDS, 0): 2, (topics.LINKS, 0): 0}
    asyncio.run(step.reseek(now=t0 + STARVED_AFTER + TICK))
    assert source.sought == [(topics.CARDS, 0, 1)]
    asyncio.run(step.reseek(now=t0 + STARVED_BEHIND_AFTER - 1))
    assert source.sought[1:] == [(topics.CARDS, 0, 1)]  # cards again; links still waits
    asyncio.run(step.reseek(now=t0 + STARVED_BEHIND_AFTER + TICK))
    assert source.sought[2:] == [(topics.LINKS, 0, 0)]  # a stuck fetch: read again after all


def test_no_seek_when_a_rebalance_begins_while_the_position_is_asked():
    step, source, sent, t0 = cards_waiting_for_links()

    async def rebalance_on_asking(topic: str, partition: int) -> int | None:
        source.balancing = True
        return 5

    source.position = rebalance_on_asking  # type: ignore[method-assign]
    asyncio.run(step.reseek(now=t0 + STARVED_AFTER + TICK))
    assert source.sought == []


# -- the bound on held records (Kafka Streams' buffered.records.per.partition)


def day(n: float) -> str:
    """An occurred_at n hours after 2020-08-01 09:00 JST (n < 15)."""
    hours, minutes = int(n), round((n % 1) * 60)
    return f"2020-08-01T{9 + hours:02d}:{minutes:02d}:00+09:00"


def feed(step: Intake, topic: str, partition: int, offset: int, hours: float) -> None:
    asyncio.run(step.on_record(topic, partition, offset, b"P1",
                               line("P1", day(hours), f"{topic}-{offset}"), (topic, offset)))


def test_a_partition_holding_its_bound_is_paused_and_resumed_at_half():
    source, sent = Source(), Sent()
    step = Intake(source, Outputs(sent), idle_wait=1000, max_held=4)
    for offset in range(5):  # the fifth was already fetched when the pause took effect
        feed(step, topics.CARDS, 0, offset, 1 + offset)
    assert source.pauses == [("pause", topics.CARDS, 0)]  # once, at the fourth
    others = [t for t in topics.INPUT_TOPICS if t != topics.CARDS]
    for topic in others:  # every other source shows 2.5 h: cards' first two go out
        feed(step, topic, 0, 0, 2.5)
    assert step.aligner.queued(topics.CARDS, 0) == 3
    assert source.pauses == [("pause", topics.CARDS, 0)]  # 3 > 4 // 2: still paused
    for topic in others:
        feed(step, topic, 0, 1, 3.5)
    assert step.aligner.queued(topics.CARDS, 0) == 2
    assert source.pauses == [("pause", topics.CARDS, 0), ("resume", topics.CARDS, 0)]
    assert REGISTRY.get_sample_value("mynapoint_aligner_paused_partitions") == 0


def test_a_paused_partition_is_not_taken_for_starved():
    source, sent = Source(), Sent()
    step = Intake(source, Outputs(sent), idle_wait=1000, max_held=2)
    source.highwater = lambda topic, partition: 100  # type: ignore[method-assign]
    feed(step, topics.CARDS, 0, 0, 1)
    feed(step, topics.CARDS, 0, 1, 2)
    assert source.pauses == [("pause", topics.CARDS, 0)]
    asyncio.run(step.reseek(now=step.aligner.partitions[0].woke + STARVED_AFTER + TICK))
    assert (topics.CARDS, 0, 2) not in source.sought  # paused by intake: silent by design
    assert (topics.LINKS, 0, 0) in source.sought  # the source it waits for: read again


def test_revoking_a_paused_partition_resumes_and_forgets_it():
    source, sent = Source(), Sent()
    step = Intake(source, Outputs(sent), idle_wait=1000, max_held=1)
    feed(step, topics.CARDS, 0, 0, 1)
    step.revoked({(topics.CARDS, 0)})
    assert source.pauses == [("pause", topics.CARDS, 0), ("resume", topics.CARDS, 0)]
    feed(step, topics.CARDS, 0, 0, 1)  # given back: paused afresh
    assert source.pauses[-1] == ("pause", topics.CARDS, 0)


def test_without_a_bound_or_where_the_engine_cannot_pause_nothing_is_paused():
    for max_held, pausable in ((None, True), (1, False)):
        source, sent = Source(), Sent()
        source.pausable = pausable  # type: ignore[misc]
        step = Intake(source, Outputs(sent), idle_wait=1000, max_held=max_held)
        for offset in range(3):
            feed(step, topics.CARDS, 0, offset, 1 + offset)
        assert source.pauses == [] and step.aligner.held() == 3


class Broker(Source):
    """A consumer of a broker holding every record: it fetches `fetch` records of each source in
    turn, skips paused sources, and hands over what it fetched even if paused meanwhile."""

    def __init__(self, records: dict[tuple[str, int], list[tuple[float, str]]]) -> None:
        super().__init__()
        self.records = records
        self.paused: set[tuple[str, int]] = set()

    def highwater(self, topic: str, partition: int) -> int | None:
        return len(self.records.get((topic, partition), ()))

    def pause(self, topic: str, partition: int) -> None:
        assert (topic, partition) not in self.paused
        self.paused.add((topic, partition))

    def resume(self, topic: str, partition: int) -> None:
        self.paused.discard((topic, partition))


def run_broker(records: dict[tuple[str, int], list[tuple[float, str]]], fetch: int,
               max_held: int | None, release_every: int = 1
               ) -> tuple[list[tuple[str, int, int]], int]:
    """The journal (topic, partition, offset) and the most records one source held."""
    broker, sent = Broker(records), Sent()
    step = Intake(broker, Outputs(sent), idle_wait=1000, max_held=max_held,
                  release_every=release_every)
    at = dict.fromkeys(records, 0)
    most = 0

    async def run() -> None:
        nonlocal most
        while any(at[s] < len(records[s]) for s in records):
            ready = [s for s in records if at[s] < len(records[s]) and s not in broker.paused]
            if not ready:
                # Held for sources the broker has nothing of: they go idle once silent for the
                # idle wait (which leaves the journal's order as it is: they have nothing more).
                step.aligner.idle_wait = 0
                await step.release()
                step.aligner.idle_wait = 1000
                ready = [s for s in records if at[s] < len(records[s]) and s not in broker.paused]
            assert ready, "every source with records left is paused: alignment stalled"
            for source in ready:
                topic, partition = source
                for offset in range(at[source], min(at[source] + fetch, len(records[source]))):
                    hours, event_id = records[source][offset]
                    await step.on_record(topic, partition, offset, b"P1",
                                         line("P1", day(hours), event_id), offset)
                    most = max(most, step.aligner.queued(topic, partition))
                at[source] = min(at[source] + fetch, len(records[source]))
        step.aligner.idle_wait = 0  # all read: the sources with no records go idle
        await step.release()

    asyncio.run(run())
    journal = [JOURNAL_DECODER.decode(v) for _, v in sent.on(topics.JOURNAL)]
    assert step.aligner.held() == 0 and not broker.paused
    return [(e.topic, e.partition, e.offset) for e in journal], most


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(
           st.tuples(st.sampled_from(topics.INPUT_TOPICS), st.integers(0, 1)),
           st.lists(st.integers(0, 14 * 60), min_size=1, max_size=25), min_size=1),
       st.integers(1, 6), st.integers(1, 8), st.sampled_from([1, 3]))
def test_the_bound_never_stalls_alignment_nor_changes_the_journal(minutes, fetch, max_held,
                                                                  release_every):
    # Each source's records in offset order carry rising times, as a producer's would.
    records = {source: [(m / 60, f"{source[0]}-{source[1]}-{i}")
                        for i, m in enumerate(sorted(ms))] for source, ms in minutes.items()}
    unbounded, _ = run_broker(records, fetch, None)
    # Releases after every few records only (the engines' `release_every`) change nothing either.
    bounded, most = run_broker(records, fetch, max_held, release_every)
    # Alignment orders each partition number; partitions interleave as they are fetched.
    assert sorted(bounded, key=itemgetter(1)) == sorted(unbounded, key=itemgetter(1))
    assert len(bounded) == sum(map(len, records.values()))
    assert most <= max_held + fetch - 1  # the rest of the fetch that reached the bound


# -- intake: journal records of several entries (schemas.journal.JournalBatch)


def batches(sent: Sent) -> list[tuple[bytes | None, list[tuple[bytes, Any]]]]:
    """The journal records sent: (record key, [(person, entry), ...]) each."""
    return [(k, journal_entries(k or b"", v)) for k, v in sent.on(topics.JOURNAL)]


def held_then_released(persons: list[str], journal_partitions: int | None) -> tuple[Sent, Source]:
    """Intake given `persons`' events (one each, on input partition 0, in rising time), all held
    (the other sources are not idle yet), then let go by one release."""
    source, sent = Source(), Sent()
    step = Intake(source, Outputs(sent), idle_wait=1000, journal_partitions=journal_partitions)

    async def run() -> None:
        for i, person in enumerate(persons):
            at = f"2020-08-01T09:{i // 60:02d}:{i % 60:02d}+09:00"
            await step.on_record(topics.CARDS, 0, i, person.encode(),
                                 line(person, at, f"e{i}"), i)
        assert sent.on(topics.JOURNAL) == []
        step.aligner.idle_wait = 0
        await step.release()

    asyncio.run(run())
    return sent, source


def test_one_release_is_journaled_in_a_record_per_journal_partition_a_person_once_each():
    # Three persons on each of two journal partitions (murmur2 of the person id, as Kafka's
    # producer routes the record's key); P2 twice: its second event starts a new record. All of
    # them came from input partition 0: a batch follows the journal's partitions, not the input's.
    people = ["P1", "P2", "P3", "P4", "P5", "P6", "P2"]
    part = {p: topics.partition_for_key(p.encode(), 2) for p in people}
    assert sorted(part[p] for p in people) == [0, 0, 0, 1, 1, 1, 1], part  # the case tested
    sent, source = held_then_released(people, journal_partitions=2)
    records = batches(sent)
    for key, entries in records:
        assert key == entries[0][0]  # keyed by its first person: on its partition
        assert {part[k.decode()] for k, _ in entries} == {part[key.decode()]}
        assert len({k for k, _ in entries}) == len(entries)  # a person once a record
        assert all(e.value == line(k.decode(), *_at_id(e)) for k, e in entries)
    # Per journal partition, the entries in the order they were released.
    for p in (0, 1):
        mine = [(k.decode(), e.offset) for _, entries in records for k, e in entries
                if part[k.decode()] == p]
        assert mine == [(person, i) for i, person in enumerate(people) if part[person] == p]
    p2 = part["P2"]
    assert len([r for r in records if part[r[0].decode()] == p2]) == 2
    assert len([r for r in records if part[r[0].decode()] != p2]) == 1
    assert sorted(source.acked) == list(range(len(people)))  # every input acknowledged


def test_with_release_every_a_partition_is_released_after_that_many_records_or_by_the_timer():
    source, sent = Source(), Sent()
    step = Intake(source, Outputs(sent), idle_wait=0, journal_partitions=1, release_every=3)

    async def record(partition: int, offset: int) -> None:
        person = f"P{partition}-{offset}"
        await step.on_record(topics.CARDS, partition, offset, person.encode(),
                             line(person, f"2020-08-01T09:00:{offset:02d}+09:00", "e"), offset)

    async def run() -> list[int]:
        journaled = []
        for offset in range(4):
            await record(0, offset)
            journaled.append(sum(len(e) for _, e in batches(sent)))
        await record(1, 0)  # another partition counts its own records
        journaled.append(sum(len(e) for _, e in batches(sent)))
        await step.release()  # the timer: every partition, whatever it received
        journaled.append(sum(len(e) for _, e in batches(sent)))
        return journaled

    assert asyncio.run(run()) == [0, 0, 3, 3, 3, 5]
    # The timer's release journals both partitions' rest: one journal partition, one record.
    assert [len(entries) for _, entries in batches(sent)] == [3, 2]
    assert sorted(source.acked) == [0, 0, 1, 2, 3]


def _at_id(entry: EventEntry) -> tuple[str, str]:
    ev = msgspec.json.decode(entry.value)
    return ev["occurred_at"], ev["event_id"]


@pytest.mark.parametrize(("people", "records"), [
    (1, [1]),                                    # one entry: today's one-entry record, no batch
    (JOURNAL_BATCH_MAX, [JOURNAL_BATCH_MAX]),
    (JOURNAL_BATCH_MAX + 1, [JOURNAL_BATCH_MAX, 1]),
])
def test_a_journal_record_holds_at_most_the_batch_limit(people, records):
    sent, _ = held_then_released([f"P{i}" for i in range(people)], journal_partitions=1)
    assert [len(entries) for _, entries in batches(sent)] == records
    tags = [msgspec.msgpack.decode(v)["k"] for _, v in sent.on(topics.JOURNAL)]
    assert tags == ["event" if n == 1 else "batch" for n in records]


@pytest.mark.parametrize(("batch_max", "records"), [(1, [1, 1, 1, 1, 1]), (2, [2, 2, 1])])
def test_the_journal_batch_setting_caps_the_entries_a_record(batch_max, records):
    # 1: one entry a record, the layout every earlier version reads (for upgrading a running
    # group worker by worker).
    source, sent = Source(), Sent()
    step = Intake(source, Outputs(sent), idle_wait=1000, journal_partitions=1,
                  batch_max=batch_max)

    async def run() -> None:
        for i in range(5):
            person = f"P{i}"
            await step.on_record(topics.CARDS, 0, i, person.encode(),
                                 line(person, f"2020-08-01T09:00:0{i}+09:00", f"e{i}"), i)
        step.aligner.idle_wait = 0
        await step.release()

    asyncio.run(run())
    assert [len(entries) for _, entries in batches(sent)] == records
    if batch_max == 1:
        assert all(type(JOURNAL_DECODER.decode(v)) is EventEntry
                   for _, v in sent.on(topics.JOURNAL))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["P1", "P2", "P3", "P4", "P5"]), min_size=1, max_size=40),
       st.integers(1, 3))
def test_batches_journal_the_same_entries_per_partition_in_the_same_order(people, partitions):
    one_by_one, _ = held_then_released(people, journal_partitions=None)
    batched, _ = held_then_released(people, journal_partitions=partitions)

    def per_partition(sent: Sent) -> dict[int, list[tuple[bytes, bytes]]]:
        out: dict[int, list[tuple[bytes, bytes]]] = {}
        for _, entries in batches(sent):
            for k, e in entries:
                out.setdefault(topics.partition_for_key(k, partitions), []).append(
                    (k, JOURNAL_ENCODER.encode(e)))
        return out

    assert per_partition(batched) == per_partition(one_by_one)
    assert all(len({k for k, _ in entries}) == len(entries) for _, entries in batches(batched))


def journal_entry(offset: int) -> bytes:
    return JOURNAL_ENCODER.encode(EventEntry(
        topic=topics.CARDS, partition=0, offset=offset,
        value=line("P1", "2020-08-01T09:00:00+09:00", "e1")))


def test_the_ledger_stores_the_fold_and_publishes_its_outcomes():
    persons, people = dict_store()
    timeline, lines = dict_store()
    sent = Sent()
    step = Ledger(CFG, persons, timeline, Outputs(sent))
    asyncio.run(step.on_entry(b"P1", journal_entry(5), At(topics.JOURNAL, 0, 5), committed=0))
    expected = fold(None, JOURNAL_DECODER.decode(journal_entry(5)), CFG, at=5)
    assert people == {b"P1": RECORD_ENCODER.encode(expected.record)}
    assert lines  # the status API's history
    [(key, value)] = sent.on(topics.DECISIONS)
    assert key == b"P1" and isinstance(OUTCOME_DECODER.decode(value), Decision)


class Logged:
    """A store and the engine's sends writing one log, to check the order of a step's calls."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def store(self, name: str) -> Store:
        data: dict[bytes, bytes] = {}

        def write(key: bytes, value: bytes) -> None:
            self.log.append(f"write {name}")
            data[key] = value

        async def changelog() -> None:
            self.log.append(f"changelog {name}")

        return Store(data.get, write, changelog)

    async def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.log.append(f"send {topic}")


def test_the_steps_hand_over_their_writes_changelogs_before_anything_else_is_sent():
    engine = Logged()
    ledger = Ledger(CFG, engine.store("persons"), engine.store("timeline"), Outputs(engine.send))
    asyncio.run(ledger.on_entry(b"P1", journal_entry(5), At(topics.JOURNAL, 0, 5), committed=0))
    assert engine.log == ["write persons", "write timeline", "changelog persons",
                          "changelog timeline", f"send {topics.DECISIONS}"]
    engine.log.clear()
    claims = Claims(CFG, engine.store("claims"), Outputs(engine.send))
    asyncio.run(claims.on_claim(claim("P1", "l1"), At(topics.CLAIMS, 0, 0)))
    assert engine.log == ["write claims", "changelog claims", f"send {topics.JOURNAL}"]


def test_the_ledger_dead_letters_an_entry_it_cannot_read_and_stores_nothing():
    persons, people = dict_store()
    timeline, _ = dict_store()
    sent = Sent()
    step = Ledger(CFG, persons, timeline, Outputs(sent))
    asyncio.run(step.on_entry(b"P1", b"\xc1", At(topics.JOURNAL, 2, 7), committed=0))
    assert people == {}
    [(_, value)] = sent.on(topics.DEADLETTER)
    dl = OUTCOME_DECODER.decode(value)
    assert isinstance(dl, DeadLetter) and dl.reason == UNREADABLE_JOURNAL_ENTRY
    assert (dl.topic, dl.partition, dl.offset) == (topics.JOURNAL, 2, 7)


# -- claims


def person_entry(person: str, offset: int) -> EventEntry:
    return EventEntry(topic=topics.CARDS, partition=0, offset=offset,
                      value=line(person, "2020-08-01T09:00:00+09:00", f"{person}-e{offset}"))


def batch_of(*people: str) -> bytes:
    return JOURNAL_ENCODER.encode(JournalBatch(
        persons=[p.encode() for p in people],
        entries=[person_entry(p, i) for i, p in enumerate(people)]))


def test_a_batch_record_folds_each_entry_as_a_record_of_its_own_at_the_same_offset():
    # What each person's record and the outcomes become is what one-entry records at the batch's
    # offset would make of them: an offset names one entry of a person either way.
    batched, singles = Sent(), Sent()
    (b_persons, b_people), (s_persons, s_people) = dict_store(), dict_store()
    seen: list[bytes] = []
    asyncio.run(Ledger(CFG, b_persons, dict_store()[0], Outputs(batched), scope=seen.append)
                .on_entry(b"P1", batch_of("P1", "P2", "P3"), At(topics.JOURNAL, 0, 9),
                          committed=0))
    single = Ledger(CFG, s_persons, dict_store()[0], Outputs(singles))
    for i, person in enumerate(["P1", "P2", "P3"]):
        asyncio.run(single.on_entry(person.encode(),
                                    JOURNAL_ENCODER.encode(person_entry(person, i)),
                                    At(topics.JOURNAL, 0, 9), committed=0))
    assert set(b_people) == {b"P1", b"P2", b"P3"} and b_people == s_people
    assert batched.records == singles.records
    assert [k for k, _ in batched.on(topics.DECISIONS)] == [b"P1", b"P2", b"P3"]
    assert seen == [b"P1", b"P2", b"P3"]  # an engine scoping stores by key is told each person


def test_a_person_in_a_batch_whose_record_cannot_be_read_does_not_stop_the_others():
    persons, people = dict_store()
    people[b"P2"] = b"\xc1"
    sent = Sent()
    asyncio.run(Ledger(CFG, persons, dict_store()[0], Outputs(sent))
                .on_entry(b"P1", batch_of("P1", "P2", "P3"), At(topics.JOURNAL, 1, 4),
                          committed=0))
    assert set(people) == {b"P1", b"P2", b"P3"} and people[b"P2"] == b"\xc1"
    assert [k for k, _ in sent.on(topics.DECISIONS)] == [b"P1", b"P3"]
    [(_, value)] = sent.on(topics.DEADLETTER)
    dl = OUTCOME_DECODER.decode(value)
    assert isinstance(dl, DeadLetter) and dl.reason == UNREADABLE_STATE
    assert (dl.topic, dl.partition, dl.offset) == (topics.JOURNAL, 1, 4)


def test_a_repeated_batch_record_is_recognised_entry_by_entry():
    # Redelivered after a crash (the same record, the same offset): each person's entry is a
    # repeat, re-published exactly, and no record changes.
    persons, people = dict_store()
    first, again = Sent(), Sent()
    asyncio.run(Ledger(CFG, persons, dict_store()[0], Outputs(first)).on_entry(
        b"P1", batch_of("P1", "P2"), At(topics.JOURNAL, 0, 3), committed=0))
    before = dict(people)
    asyncio.run(Ledger(CFG, persons, dict_store()[0], Outputs(again)).on_entry(
        b"P1", batch_of("P1", "P2"), At(topics.JOURNAL, 0, 3), committed=0))
    assert people == before
    assert again.on(topics.DECISIONS) == first.on(topics.DECISIONS)


def claim(person: str, event_id: str) -> bytes:
    return JOURNAL_ENCODER.encode(ClaimRequest(kind="account", key="demo-pay:acct-1",
                                               person_id=person, event_id=event_id))


def test_the_first_claim_of_a_key_is_granted_and_the_next_refused():
    holders, held = dict_store()
    sent = Sent()
    step = Claims(CFG, holders, Outputs(sent))

    async def run() -> None:
        await step.on_claim(claim("P1", "l1"), At(topics.CLAIMS, 0, 0))
        await step.on_claim(claim("P2", "l2"), At(topics.CLAIMS, 0, 1))

    asyncio.run(run())
    answers = [(k, JOURNAL_DECODER.decode(v)) for k, v in sent.on(topics.JOURNAL)]
    assert [(k, a.granted, a.holder) for k, a in answers] == [(b"P1", True, "P1"),
                                                              (b"P2", False, "P1")]
    assert held == {b"demo-pay:acct-1": b"P1"}


@pytest.mark.parametrize("value", [None, b"", b"\xc1", msgspec.msgpack.encode({"k": "claim"})])
def test_a_claim_that_cannot_be_read_is_a_dead_letter(value):
    holders, held = dict_store()
    sent = Sent()
    asyncio.run(Claims(CFG, holders, Outputs(sent)).on_claim(value, At(topics.CLAIMS, 1, 3)))
    [(_, out)] = sent.on(topics.DEADLETTER)
    dl = OUTCOME_DECODER.decode(out)
    assert isinstance(dl, DeadLetter) and dl.reason == UNREADABLE_CLAIM
    assert sent.on(topics.JOURNAL) == [] and held == {}


# -- who waits for a claim's answer (the `mynapoint_claim_waits` gauges)


def test_a_person_waits_from_the_fold_that_asks_a_claim_to_the_fold_of_its_answer():
    persons, _ = dict_store()
    timeline, _ = dict_store()
    holders, _ = dict_store()
    sent = Sent()
    ledger = Ledger(CFG, persons, timeline, Outputs(sent))
    claims = Claims(CFG, holders, Outputs(sent))
    offsets = iter(range(100))

    async def fold_line(event: Any) -> None:
        offset = next(offsets)
        entry = EventEntry(topic=topics.TOPIC_BY_TYPE[event["type"]],
                           partition=0, offset=offset,
                           value=msgspec.json.encode(event))
        await ledger.on_entry(b"P1", JOURNAL_ENCODER.encode(entry), At(topics.JOURNAL, 3, offset),
                              committed=0)

    async def run() -> list[int]:
        counts = []
        for event in phase1_linked("P1"):
            await fold_line(event)
            counts.append(ledger.waits.count())
        [(_, request)] = sent.on(topics.CLAIMS)
        await claims.on_claim(request, At(topics.CLAIMS, 0, 0))
        [(_, answer)] = sent.on(topics.JOURNAL)
        await ledger.on_entry(b"P1", answer, At(topics.JOURNAL, 3, next(offsets)), committed=0)
        counts.append(ledger.waits.count())
        return counts

    # card, reservation, link (asks the account's claim), the answer
    assert asyncio.run(run()) == [0, 0, 1, 0]


def test_claim_waits_report_the_longest_wait_and_forget_revoked_partitions():
    waits = ClaimWaits()
    assert (waits.count(), waits.oldest(100.0)) == (0, 0.0)
    waits.waiting(b"P1", 3, "l1", 10.0)
    waits.waiting(b"P2", 1, "l2", 40.0)
    waits.waiting(b"P1", 3, "l1", 50.0)  # the same request folded again: still waiting since 10
    assert (waits.count(), waits.oldest(100.0)) == (2, 90.0)
    waits.waiting(b"P1", 3, "l3", 70.0)  # waiting for another request now: its clock starts
    assert waits.oldest(100.0) == 60.0
    waits.revoked({1})
    assert (waits.count(), waits.oldest(100.0)) == (1, 30.0)
    waits.done(b"P1")
    waits.done(b"P9")  # nobody: nothing happens
    assert (waits.count(), waits.oldest(100.0)) == (0, 0.0)


def test_the_gauges_read_the_claim_waits_they_watch_at_each_scrape():
    waits = ClaimWaits()
    metrics.watch_claim_waits(waits)
    assert REGISTRY.get_sample_value("mynapoint_claim_waits") == 0
    waits.waiting(b"P1", 0, "l1", time.monotonic() - 30)
    assert REGISTRY.get_sample_value("mynapoint_claim_waits") == 1
    assert REGISTRY.get_sample_value("mynapoint_claim_wait_oldest_seconds") >= 30
