"""Event-time alignment (streams/core/align.py), on a simulated clock."""

from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.align import FOUND, PASS, SEEK, TAKE, Aligner, Continuity, HasMore, InOrder

TOPICS = ("cards", "certificates", "reservations", "registrations", "links", "payments")
IDLE = 2.0


def _drive(arrivals: list[tuple[float, str, int, int, float]], tick: float = 0.05):
    """arrivals: (wall time, topic, partition, offset, occurred_at). Returns the released order."""
    aligner = Aligner(TOPICS, IDLE)
    arrivals = sorted(arrivals, key=lambda a: a[0])
    released = []
    now = 0.0
    i = 0
    end = (arrivals[-1][0] if arrivals else 0.0) + 3 * IDLE
    while now <= end:
        while i < len(arrivals) and arrivals[i][0] <= now:
            _, topic, p, off, ts = arrivals[i]
            aligner.add(topic, p, off, ts, (topic, p, off), now)
            i += 1
        released += aligner.release(now)
        now += tick
    assert aligner.held() == 0
    return released


histories = st.lists(
    st.tuples(st.sampled_from(TOPICS), st.integers(0, 1), st.integers(0, 10_000)),
    min_size=1, max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(histories, st.lists(st.floats(0, IDLE / 2 - 0.01), min_size=6, max_size=6))
def test_order_does_not_depend_on_per_topic_lag(history, lags):
    # Per source, offsets follow time (each system sends its own facts in time order).
    events = []
    per_source: dict[tuple[str, int], int] = {}
    for topic, p, ts in sorted(history, key=lambda h: h[2]):
        off = per_source.get((topic, p), 0)
        per_source[(topic, p)] = off + 1
        events.append((topic, p, off, float(ts)))
    interleaved = [(i * 0.001, t, p, o, ts) for i, (t, p, o, ts) in enumerate(events)]
    lag = dict(zip(TOPICS, lags, strict=True))
    lagged = [(lag[t] + o * 0.001, t, p, o, ts) for (t, p, o, ts) in events]
    a = [(h.item, h.late) for h in _drive(interleaved)]
    b = [(h.item, h.late) for h in _drive(lagged)]
    for part in (0, 1):  # partitions are independent: compare each one's journal order
        assert [x for x in a if x[0][1] == part] == [x for x in b if x[0][1] == part]
    rank = {t: i for i, t in enumerate(TOPICS)}
    for part in (0, 1):
        expected = sorted((e for e in events if e[1] == part),
                          key=lambda e: (e[3], rank[e[0]], e[2]))
        assert [x for x, _ in a if x[1] == part] == [(t, p, o) for t, p, o, _ in expected]
    assert not any(late for _, late in a)


@settings(max_examples=150, deadline=None)
@given(histories, st.lists(st.floats(0, 3 * IDLE), min_size=6, max_size=6),
       st.floats(0, 4 * IDLE), st.integers(0, 1))
def test_releasing_one_partition_is_that_partition_of_releasing_all(history, lags, now, part):
    # Intake releases only the partition a record arrived on: the same records, in the same
    # order and with the same late marks, as its share of a release of every partition.
    aligner = Aligner(TOPICS, IDLE)
    per_source: dict[tuple[str, int], int] = {}
    lag = dict(zip(TOPICS, lags, strict=True))
    for topic, p, ts in sorted(history, key=lambda h: h[2]):
        off = per_source.get((topic, p), 0)
        per_source[(topic, p)] = off + 1
        aligner.add(topic, p, off, float(ts), (topic, p, off), min(now, lag[topic]))
    every, one = copy.deepcopy(aligner), copy.deepcopy(aligner)
    released = [(h.item, h.late) for h in one.release(now, partition=part)]
    assert released == [(h.item, h.late) for h in every.release(now) if h.partition == part]
    others = {q: pt.held for q, pt in aligner.partitions.items() if q != part}
    assert {q: pt.held for q, pt in one.partitions.items() if q != part} == others


def test_a_release_of_one_partition_leaves_the_others_held():
    aligner = Aligner(("a", "b"), IDLE)
    aligner.add("a", 0, 0, 10.0, "p0", now=0.0)
    aligner.add("a", 1, 0, 10.0, "p1", now=0.0)
    assert [h.item for h in aligner.release(now=IDLE, partition=1)] == ["p1"]
    assert aligner.held() == 1
    assert aligner.release(now=IDLE, partition=2) == []
    assert [h.item for h in aligner.release(now=IDLE)] == ["p0"]


def test_a_record_delayed_past_the_idle_wait_is_released_late_in_arrival_order():
    arrivals = [
        (0.0, "cards", 0, 0, 100.0),
        (0.0, "payments", 0, 0, 300.0),
        # The link (time 200) comes long after the idle wait released the payment (time 300).
        (10.0, "links", 0, 0, 200.0),
    ]
    out = _drive(arrivals)
    assert [(h.topic, h.late) for h in out] == [
        ("cards", False), ("payments", False), ("links", True)
    ]


def test_a_candidate_waits_for_a_silent_source_until_the_idle_wait():
    aligner = Aligner(TOPICS, IDLE)
    aligner.add("payments", 0, 0, 500.0, "pay", now=0.0)
    assert aligner.release(now=IDLE - 0.1) == []
    aligner.add("links", 0, 0, 400.0, "link", now=IDLE - 0.05)
    # The link is earlier, so it goes first once the other sources are idle; the payment then
    # waits until the links source, which just spoke, has been silent for the idle wait too.
    assert [h.item for h in aligner.release(now=IDLE + 0.01)] == ["link"]
    assert aligner.release(now=2 * IDLE - 0.1) == []
    assert [h.item for h in aligner.release(now=2 * IDLE)] == ["pay"]


def test_sources_that_spoke_later_release_without_waiting():
    aligner = Aligner(("a", "b"), IDLE)
    aligner.add("a", 0, 0, 10.0, "a0", now=0.0)
    aligner.add("b", 0, 0, 20.0, "b0", now=0.0)
    assert [h.item for h in aligner.release(now=0.0)] == ["a0"]  # b0 waits for a to pass 20
    aligner.add("a", 0, 1, 30.0, "a1", now=0.1)
    assert [h.item for h in aligner.release(now=0.1)] == ["b0"]


def test_ties_follow_the_topic_order_then_the_offset():
    aligner = Aligner(("a", "b"), IDLE)
    aligner.add("b", 0, 0, 10.0, "b0", now=0.0)
    aligner.add("a", 0, 5, 10.0, "a5", now=0.0)
    aligner.add("a", 0, 6, 10.0, "a6", now=0.0)
    assert [h.item for h in aligner.flush()] == ["a5", "a6", "b0"]


def test_dropped_partitions_are_forgotten():
    aligner = Aligner(("a", "b"), IDLE)
    aligner.add("a", 3, 0, 10.0, "x", now=0.0)
    assert aligner.drop({3}) == 1 and aligner.held() == 0 and aligner.flush() == []


def test_a_source_with_records_still_to_fetch_is_never_idle():
    # Our own backlog may keep a source's records from us for longer than the idle wait; as long
    # as the broker holds more of it, the candidate waits (Kafka Streams' lag-aware idleness).
    backlog = {("a", 0): 5}  # the broker's high watermark for source a

    def has_more(topic: str, partition: int, next_offset: int) -> bool:
        return backlog.get((topic, partition), 0) > next_offset

    aligner = Aligner(("a", "b"), IDLE)
    aligner.add("b", 0, 0, 50.0, "b0", now=0.0)
    assert aligner.release(now=10 * IDLE, has_more=has_more) == []
    for off, ts in enumerate((10.0, 20.0, 30.0, 40.0, 60.0)):
        aligner.add("a", 0, off, ts, f"a{off}", now=10 * IDLE)
    out = [h.item for h in aligner.release(now=10 * IDLE, has_more=has_more)]
    assert out == ["a0", "a1", "a2", "a3", "b0"]
    # a4 is later than anything b showed: b must be silent for the idle wait, counted from the
    # partition's waking at 10 * IDLE (it had been quiet since b0), not from b0's arrival.
    assert aligner.release(now=10.5 * IDLE, has_more=has_more) == []
    assert [h.item for h in aligner.release(now=11 * IDLE, has_more=has_more)] == ["a4"]
    assert not any(h.late for h in aligner.flush())


def test_a_source_with_more_to_fetch_that_delivers_nothing_is_starved():
    # Seen on Apache Kafka after a rebalance: the only record of `certificates` in a partition was
    # never delivered (no later record showed the hole), and everything else of the partition
    # waited for it for ever. `starved` names such sources so the intake can read them again.
    ends = {("a", 0): 1, ("b", 0): 3}  # the broker's high watermarks

    def has_more(topic: str, partition: int, next_offset: int) -> bool:
        return ends.get((topic, partition), 0) > next_offset

    aligner = Aligner(("a", "b"), IDLE)
    aligner.add("b", 0, 0, 50.0, "b0", now=0.0)
    aligner.add("b", 0, 1, 60.0, "b1", now=1.0)
    assert aligner.release(now=100.0, has_more=has_more) == []  # a has more: never idle
    assert aligner.starved(5.0, 10.0, has_more) == []
    # a: nothing read since the partition was first seen; b: offset 2 not delivered since b1.
    assert aligner.starved(10.0, 10.0, has_more) == [("a", 0, 0, 10.0)]
    assert aligner.starved(11.0, 10.0, has_more) == [("a", 0, 0, 11.0), ("b", 0, 2, 10.0)]
    ends[("b", 0)] = 2  # b1 was b's last record: nothing missing there
    assert aligner.starved(100.0, 10.0, has_more) == [("a", 0, 0, 100.0)]
    aligner.add("a", 0, 0, 55.0, "a0", now=100.0)  # read again
    assert aligner.starved(105.0, 10.0, has_more) == []
    assert [h.item for h in aligner.release(now=100.0, has_more=has_more)] == ["b0", "a0"]
    assert [h.item for h in aligner.release(now=100.0 + IDLE, has_more=has_more)] == ["b1"]


def test_a_dead_lettered_record_moves_its_source_on():
    # The broker's high watermark counts bad records too; once intake has passed them, the
    # source has nothing more to deliver and may go idle.
    def has_more(topic: str, partition: int, next_offset: int) -> bool:
        return topic == "a" and next_offset < 3  # source a holds offsets 0..2

    aligner = Aligner(("a", "b"), IDLE)
    aligner.add("a", 0, 0, 10.0, "a0", now=0.0)
    aligner.add("b", 0, 0, 50.0, "b0", now=0.0)
    aligner.passed("a", 0, 1, now=0.0)  # offset 1 was bad
    assert [h.item for h in aligner.release(now=0.0, has_more=has_more)] == ["a0"]
    assert aligner.release(now=10 * IDLE, has_more=has_more) == []  # offset 2 still to come
    aligner.passed("a", 0, 2, now=10 * IDLE)
    assert aligner.release(now=10 * IDLE, has_more=has_more) == []  # a just spoke
    assert [h.item for h in aligner.release(now=11 * IDLE, has_more=has_more)] == ["b0"]


# InOrder: a consumer group commits one offset per source, so completions are handed back per
# source in offset order only.


def test_a_record_finished_early_waits_for_the_earlier_records_of_its_source():
    gate = InOrder()
    held = gate.track("t", 0, "offset 0")  # held for alignment
    bad = gate.track("t", 0, "offset 1")  # a dead letter at once
    other = gate.track("t", 1, "p1 offset 0")
    assert gate.done(bad) == []
    assert gate.done(other) == ["p1 offset 0"]
    assert gate.done(held) == ["offset 0", "offset 1"]
    assert gate.pending() == 0


@given(st.permutations(range(12)))
def test_completions_come_back_in_offset_order_whatever_order_they_finish(finish_order):
    gate = InOrder()
    entries = [gate.track("t", 0, i) for i in range(12)]
    returned: list[int] = []
    for i in finish_order:
        returned += gate.done(entries[i])
        # Never anything whose predecessor is unfinished: always a prefix of the offsets.
        assert returned == list(range(len(returned)))
    assert returned == list(range(12))


def test_dropped_sources_return_nothing_even_when_read_again():
    gate = InOrder()
    stale = gate.track("t", 0, "old owner's 5")
    gate.drop({("t", 0)})
    fresh = gate.track("t", 0, "new read of 3")
    assert gate.done(stale) == []
    assert gate.done(fresh) == ["new read of 3"]


# Continuity: records of a source the consumer skipped are read again, never committed past.


def _feed(gate: Continuity, offsets: list[int], start: int = 0) -> list[tuple[str, int]]:
    return [gate.check(("t", 0), o, start) for o in offsets]


def test_consecutive_records_are_taken():
    assert _feed(Continuity(), [5, 6, 7], start=5) == [(TAKE, 5), (TAKE, 6), (TAKE, 7)]


def test_a_hole_is_read_again_and_what_was_queued_before_the_seek_is_skipped():
    # 0-2 taken; 3 and 4 never delivered (Faust dropped them); 5-6 were queued already.
    # After the seek to 3 the consumer delivers 3, 4, 5, 6 again.
    got = _feed(Continuity(), [0, 1, 2, 5, 6, 3, 4, 5, 6])
    assert got == [(TAKE, 0), (TAKE, 1), (TAKE, 2), (FOUND, 3), (SEEK, 3),
                   (TAKE, 3), (TAKE, 4), (TAKE, 5), (TAKE, 6)]


def test_a_hole_dropped_again_after_the_seek_is_sought_again_however_often():
    # Seen on Apache Kafka: after the seek to 125 the consumer still dropped 125-200 (its fetch
    # loop finishing an older batch) and delivered 201 on: those must not be taken, nor count as
    # reads that found the hole to be real.
    got = _feed(Continuity(retries=1), [124, 126, 201, 202, 125, 126], start=124)
    assert got == [(TAKE, 124), (FOUND, 125), (SEEK, 125), (SEEK, 125), (TAKE, 125),
                   (TAKE, 126)]


def test_records_delivered_again_are_taken_again_never_dropped():
    # A start guessed too high (the first record seen before Faust's seek) must not drop the
    # records Faust then delivers from the committed offset; repeats are the ledger's to fold.
    assert _feed(Continuity(), [0, 1, 2, 1, 2, 3]) == [
        (TAKE, 0), (TAKE, 1), (TAKE, 2), (TAKE, 1), (TAKE, 2), (TAKE, 3)]


def test_a_hole_that_stays_after_the_retries_is_real():
    # Offsets 2-3 are transaction markers: every read after the seek starts again at 4. The
    # record after them is taken, saying where the hole began (commits may pass it).
    got = _feed(Continuity(retries=2), [0, 1, 4, 4, 4, 5])
    assert got == [(TAKE, 0), (TAKE, 1), (FOUND, 2), (SEEK, 2), (PASS, 2), (TAKE, 5)]


def test_holes_sought_and_not_yet_read_are_listed_until_read():
    gate = Continuity()
    _feed(gate, [0, 1, 3])
    assert gate.holes() == [(("t", 0), 2)]
    _feed(gate, [2])
    assert gate.holes() == []


def test_the_start_is_the_committed_offset_and_dropped_sources_start_afresh():
    gate = Continuity()
    assert gate.check(("t", 0), 12, 10) == (FOUND, 10)
    gate.drop({("t", 0)})
    assert gate.check(("t", 0), 12, 12) == (TAKE, 12)


@given(st.lists(st.integers(0, 30), max_size=60))
def test_what_is_taken_is_always_the_next_offset(deliveries):
    # Whatever order a consumer delivers in, taken offsets follow on from the start with no hole
    # (a real hole aside, after the retries).
    gate = Continuity(retries=10**6)
    taken = [o for o in deliveries if gate.check(("t", 0), o, 0) == (TAKE, o)]
    furthest = -1
    for o in taken:
        assert o <= furthest + 1  # never past a record not yet taken
        furthest = max(furthest, o)


def test_after_a_quiet_spell_every_source_gets_the_idle_wait_again():
    # A night's quiet, then a burst: the first record of source a must not go out because b was
    # "silent for hours" while b's earlier records of the burst are still in flight (its high
    # watermark not fetched yet). Seen on Apache Kafka as late decisions after a pause.
    aligner = Aligner(("a", "b"), IDLE)
    aligner.add("a", 0, 0, 10.0, "a0", now=0.0)
    aligner.add("b", 0, 0, 11.0, "b0", now=0.0)
    assert [h.item for h in aligner.release(now=0.0)] == ["a0"]
    assert [h.item for h in aligner.release(now=IDLE)] == ["b0"]  # a silent for IDLE
    quiet = 100 * IDLE
    aligner.add("a", 0, 1, 30.0, "a1", now=quiet)
    assert aligner.release(now=quiet + 0.5 * IDLE) == []  # b may still be on its way
    aligner.add("b", 0, 1, 20.0, "b1", now=quiet + 0.5 * IDLE)
    out = aligner.release(now=quiet + 0.5 * IDLE)
    assert [(h.item, h.late) for h in out] == [("b1", False)]
    assert [h.item for h in aligner.release(now=quiet + 1.5 * IDLE)] == ["a1"]


def test_a_steady_source_does_not_wake_its_partition():
    # Records that keep coming (gaps shorter than the idle wait) go out as soon as the silent
    # sources have been silent for the idle wait: no extra wait on the steady path.
    aligner = Aligner(("a", "b"), IDLE)
    aligner.add("b", 0, 0, 1.0, "b0", now=0.0)
    assert aligner.release(now=0.0) == []  # a has not spoken yet
    released_at = {}
    for i in range(1, 6):
        now = i * 0.6 * IDLE
        aligner.add("a", 0, i, 1.0 + i, f"a{i}", now=now)
        released_at |= {h.item: i for h in aligner.release(now=now)}
    # a1 waits for b's idle wait (from b0 at 0.0), then each record goes out as it comes.
    assert released_at == {"b0": 1, "a1": 2, "a2": 2, "a3": 3, "a4": 4, "a5": 5}


def test_a_source_resumed_after_a_pause_does_not_wake_its_partition():
    # Intake pauses a source holding its bound and resumes it once drained: that silence was
    # intake's own, so the source's next record must not give the silent sources the idle wait
    # again (a backlog of one topic would otherwise wait it once per pause).
    def run(heard: bool) -> list[str]:
        aligner = Aligner(("a", "b"), IDLE)
        assert aligner.add("a", 0, 0, 1.0, "a0", now=0.0) == 1
        assert aligner.add("a", 0, 1, 2.0, "a1", now=0.0) == 2
        assert aligner.queued("a", 0) == 2 and aligner.queued("b", 0) == 0
        assert [h.item for h in aligner.release(now=IDLE)] == ["a0", "a1"]  # b silent: idle
        if heard:
            aligner.heard("a", 0, now=10 * IDLE)  # resumed
        aligner.add("a", 0, 2, 3.0, "a2", now=10 * IDLE + 0.01)
        return [h.item for h in aligner.release(now=10 * IDLE + 0.01)]

    assert run(heard=True) == ["a2"]
    assert run(heard=False) == []  # the quiet spell's rule: b gets the idle wait again


def more_of(more: dict[str, bool]) -> HasMore:
    """A `has_more` that reads, per topic, whether the broker has more (the dict may change)."""
    def has_more(topic: str, partition: int, next_offset: int) -> bool:
        return more[topic]
    return has_more


def test_a_tie_waits_for_a_source_ranked_before_it_that_may_have_another():
    # Ties go by topic rank: b's record at 10.0 must not go while a, ranked first, has shown only
    # 10.0 and has more to read (its next record may be at 10.0 too). Found by the bound's
    # property test (tests/pipeline/test_steps.py): which of two equal times went first depended
    # on whether the consumer had fetched a's next record yet.
    more = {"a": True, "b": False}
    has_more = more_of(more)
    aligner = Aligner(("a", "b"), IDLE)
    aligner.add("a", 0, 0, 10.0, "a0", now=0.0)
    aligner.add("b", 0, 0, 10.0, "b0", now=0.0)
    assert [h.item for h in aligner.release(0.0, has_more)] == ["a0"]
    aligner.add("a", 0, 1, 10.0, "a1", now=0.1)
    aligner.add("a", 0, 2, 11.0, "a2", now=0.1)
    more["a"] = False
    assert [h.item for h in aligner.release(0.1, has_more)] == ["a1", "b0"]


def test_a_tie_does_not_wait_for_a_source_ranked_after_it():
    # b has shown 10.0 and has more: its next record at 10.0 would go after a's anyway.
    has_more = more_of({"a": False, "b": True})
    aligner = Aligner(("a", "b"), IDLE)
    aligner.add("b", 0, 0, 10.0, "b0", now=0.0)
    assert [h.item for h in aligner.release(IDLE, has_more)] == ["b0"]  # a idle
    aligner.add("a", 0, 0, 10.0, "a0", now=IDLE + 0.1)
    assert [(h.item, h.late) for h in aligner.release(IDLE + 0.1, has_more)] == [("a0", False)]
