"""Event-time alignment: one deterministic order per person across the input topics.

Kafka orders records only within one partition of one topic, and a person's card, reservation,
link and payments come from different systems on different topics. For each partition number the
co-partitioned input sources are merged by `occurred_at` (ties: the fixed topic order, then the
offset) into the journal that the ledger folds. This is Kafka Streams' `max.task.idle.ms` idea:

- Each source (topic, partition) keeps its own FIFO of records not yet released, in offset order;
  records of one source are never reordered among themselves (the ledger's redelivery check relies
  on offsets rising per source).
- The candidate is the head with the smallest (occurred_at, topic rank, offset). It is released
  when every source with nothing buffered has already shown a later record (or one as late, from
  a topic ranked after the candidate's: a tie goes by rank), or is idle: the broker has nothing
  more for it (the caller's `has_more` says so) and it has been silent for `idle_wait` seconds
  (a source that never spoke counts as silent from the moment the partition was first seen). A
  source with records still to fetch is never idle, however long our own backlog keeps them from
  us: that is what keeps a backlog's order deterministic.
- Silence is counted from the partition's waking too: when a record arrives on a partition that
  has had no record from any source for `idle_wait` (the night's quiet, a pause between two
  batches), every source's silence starts again then. Otherwise the first records of the burst
  would find the other sources "silent for hours", and the consumer's high watermark of a source
  whose earlier records are still in flight (another producer's batch, a fetch not answered yet)
  would not show them: the burst's first records went out ahead of them, and those were late.
- A record older than one already released from its partition is late: waiting cannot put it in
  order any more, so it is released at once, in arrival order, and marked late.

Pure and clock-free: the caller passes `now` (a monotonic time). Nothing here is shared between
instances: the live intake keeps one `Aligner` per worker.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: has_more(topic, partition, next_offset): does the broker hold records of that source from
#: next_offset on?
HasMore = Callable[[str, int, int], bool]


@dataclass(slots=True)
class Held:
    topic: str
    partition: int
    offset: int
    occurred_at: float
    item: Any
    late: bool = False


@dataclass(slots=True)
class _Partition:
    # When the partition was first seen or last woke up after a quiet `idle_wait`: silence is
    # counted from then at the earliest.
    woke: float
    queues: dict[str, deque[Held]] = field(default_factory=dict)
    # Latest occurred_at shown by each source, and when it last delivered anything.
    frontier: dict[str, float] = field(default_factory=dict)
    last_arrival: dict[str, float] = field(default_factory=dict)
    last_offset: dict[str, int] = field(default_factory=dict)
    released_up_to: float = float("-inf")
    held: int = 0


class Aligner:
    def __init__(self, topics: tuple[str, ...], idle_wait: float):
        self.topics = topics
        self.rank = {t: i for i, t in enumerate(topics)}
        self.idle_wait = idle_wait
        self.partitions: dict[int, _Partition] = {}

    def held(self) -> int:
        return sum(p.held for p in self.partitions.values())

    def add(self, topic: str, partition: int, offset: int, occurred_at: float, item: Any,
            now: float) -> int:
        """Holds one record; returns how many records its source (topic, partition) holds now."""
        part = self._arrival(partition, now)
        queue = part.queues.get(topic)
        if queue is None:
            queue = part.queues[topic] = deque()
        queue.append(Held(topic, partition, offset, occurred_at, item))
        part.held += 1
        if occurred_at > part.frontier.get(topic, float("-inf")):
            part.frontier[topic] = occurred_at
        part.last_arrival[topic] = now
        part.last_offset[topic] = offset
        return len(queue)

    def queued(self, topic: str, partition: int) -> int:
        """How many records the source (topic, partition) holds."""
        part = self.partitions.get(partition)
        if part is None:
            return 0
        queue = part.queues.get(topic)
        return len(queue) if queue else 0

    def passed(self, topic: str, partition: int, offset: int, now: float) -> None:
        """Notes a record of a source that will not be journaled (a dead letter): the source has
        still moved on, and must not look as if it had more to deliver."""
        part = self._arrival(partition, now)
        part.last_arrival[topic] = now
        part.last_offset[topic] = offset

    def heard(self, topic: str, partition: int, now: float) -> None:
        """Notes that the source is live again (its fetching resumed after a pause): its next
        record, though it comes after a silence, does not wake the partition (which would give
        the silent sources the idle wait again)."""
        part = self.partitions.get(partition)
        if part is not None:
            part.last_arrival[topic] = now

    def _arrival(self, partition: int, now: float) -> _Partition:
        """The partition a record just arrived on, woken if it had been quiet for `idle_wait`."""
        part = self.partitions.get(partition)
        if part is None:
            part = self.partitions[partition] = _Partition(woke=now)
        elif now - max(part.last_arrival.values(), default=part.woke) >= self.idle_wait:
            part.woke = now
        return part

    def release(self, now: float, has_more: HasMore | None = None,
                partition: int | None = None) -> list[Held]:
        """Everything that may go to the journal now, in journal order per partition.

        `has_more(topic, partition, next_offset)` tells whether the broker holds records of that
        source from `next_offset` on (the live intake asks its consumer's high watermark); without
        it, silence alone makes a source idle. With `partition`, only that partition's records:
        after a record of one partition arrives, the others' can only have become free by the
        passing of time, which a periodic call over all of them takes care of.
        """
        out: list[Held] = []
        if partition is not None:
            part = self.partitions.get(partition)
            if part is not None and part.held:
                self._release_partition(partition, part, now, has_more, out)
            return out
        for p, part in self.partitions.items():
            if part.held:
                self._release_partition(p, part, now, has_more, out)
        return out

    def starved(self, now: float, after: float,
                has_more: HasMore) -> list[tuple[str, int, int, float]]:
        """Sources of the partitions seen so far that the broker has more of (`has_more`) and
        that delivered nothing for `after` seconds: (topic, partition, next offset, seconds
        silent) each.

        Alignment never lets such a source go idle, so if the consumer has lost its place in it
        (a record skipped at the end of a source, with no later one to show the hole), the
        partition would wait for it for ever: the caller reads it again from the next offset.
        """
        out = []
        for p, part in self.partitions.items():
            for topic in self.topics:
                nxt = part.last_offset.get(topic, -1) + 1
                silent = now - max(part.last_arrival.get(topic, part.woke), part.woke)
                if silent >= after and has_more(topic, p, nxt):
                    out.append((topic, p, nxt, silent))
        return out

    def flush(self) -> list[Held]:
        """Everything still held, as if every silent source had gone idle (for a clean stop)."""
        return self.release(float("inf"))

    def drop(self, partitions: set[int]) -> int:
        """Forgets partitions this worker no longer owns; their records were not acknowledged,
        so the new owner reads them again."""
        dropped = 0
        for p in partitions:
            part = self.partitions.pop(p, None)
            if part is not None:
                dropped += part.held
        return dropped

    def _release_partition(self, p: int, part: _Partition, now: float,
                           has_more: HasMore | None, out: list[Held]) -> None:
        rank = self.rank
        while part.held:
            head: Held | None = None
            for q in part.queues.values():
                if q:
                    h = q[0]
                    if head is None or (h.occurred_at, rank[h.topic], h.offset) < (
                        head.occurred_at, rank[head.topic], head.offset
                    ):
                        head = h
            assert head is not None
            t = head.occurred_at
            if t < part.released_up_to:
                head.late = True
            elif not self._may_release(p, part, t, rank[head.topic], now, has_more):
                return
            part.queues[head.topic].popleft()
            part.held -= 1
            if t > part.released_up_to:
                part.released_up_to = t
            out.append(head)

    def _may_release(self, p: int, part: _Partition, t: float, t_rank: int, now: float,
                     has_more: HasMore | None) -> bool:
        """Whether the candidate (`occurred_at` `t`, its topic's rank `t_rank`) may go now."""
        idle, rank = self.idle_wait, self.rank
        for topic in self.topics:
            q = part.queues.get(topic)
            if q:
                continue  # its head is at least as late as the candidate
            shown = part.frontier.get(topic, float("-inf"))
            if shown > t or (shown == t and rank[topic] > t_rank):
                # Its next record cannot go first: a tie at `t` goes by topic rank, so a source
                # ranked before the candidate that has only shown `t` may still have another.
                continue
            if has_more is not None and has_more(topic, p, part.last_offset.get(topic, -1) + 1):
                return False  # not silent: the broker has more of it that we have not read yet
            if now - max(part.last_arrival.get(topic, part.woke), part.woke) >= idle:
                continue
            return False
        return True


class InOrder:
    """Completions of records, handed back per source in offset order.

    A consumer group commits one offset per source: everything before it counts as done. So a
    record may be acknowledged only once every earlier record of its source is done too. Records
    finish out of offset order here: a bad record becomes a dead letter at once while earlier
    records of its partition are still held for alignment. `track` each record as it is read (in
    offset order per source); `done` marks one finished and returns the records, in offset order,
    that may now be acknowledged (the finished prefix of its source). `drop` forgets sources this
    worker no longer owns: their entries, finished or not, are never returned (the new owner reads
    them again from the committed offset).
    """

    __slots__ = ("_sources",)

    def __init__(self) -> None:
        self._sources: dict[tuple[str, int], deque[list[Any]]] = {}

    def track(self, topic: str, partition: int, item: Any) -> list[Any]:
        """Registers the next record of (topic, partition); returns its handle for `done`."""
        entry = [item, False, (topic, partition)]
        queue = self._sources.get((topic, partition))
        if queue is None:
            queue = self._sources[(topic, partition)] = deque()
        queue.append(entry)
        return entry

    def done(self, entry: list[Any]) -> list[Any]:
        """Marks `entry` finished; returns the items now finished from the head of its source."""
        entry[1] = True
        queue = self._sources.get(entry[2])
        if not queue or not queue[0][1]:
            return []
        out = []
        while queue and queue[0][1]:
            out.append(queue.popleft()[0])
        return out

    def pending(self) -> int:
        return sum(len(q) for q in self._sources.values())

    def drop(self, topic_partitions: set[tuple[str, int]]) -> None:
        for tp in topic_partitions:
            self._sources.pop(tp, None)


#: What `Continuity.check` says to do with a record.
TAKE, SEEK, FOUND, PASS = "take", "seek", "found", "pass"


class Continuity:
    """Notices records of a source that never reached us, so they can be read again.

    A consumer group commits one offset per source, and Faust lets a commit pass a single offset
    nobody acknowledged (`Consumer._new_offset`). Faust can also skip records of a partition
    without a word: right after a table recovery it seeks the partition back to its committed
    offset while its fetch loop is still delivering an older batch, which moves the loop's read
    offset past records it then drops as "already read". A record skipped like that would be
    committed past and never decided. So intake checks that each source's offsets follow on:

    - `TAKE` the record that comes next (the source's start is the committed offset, or the
      partition's first offset while nothing is committed: Faust would commit past records
      missing at its head);
    - `TAKE` a record before that too: delivered again (the ledger folds repeats once);
    - `FOUND` when a record comes after a hole not sought yet: the caller reports the hole and
      seeks the consumer to the returned offset, so the records in the hole are read again (this
      record comes again after them); `SEEK` when the hole is already known, for the same seek.
      Records still queued from before the seek, or read after it while the consumer was still
      dropping the hole (its fetch loop finishing the older batch), come with offsets past the
      one that found the hole: each seeks again.
    - `PASS` the record after a hole still there after `retries` reads that start inside it: the
      hole is real (transaction markers, aborted transactions, compaction or retention leave
      offsets that are not records); the caller takes the record and may commit past the hole.
    """

    __slots__ = ("_next", "_pending", "retries")

    def __init__(self, retries: int = 3) -> None:
        self.retries = retries
        self._next: dict[tuple[str, int], int] = {}
        # source -> (the offset sought, the offset that found the hole, reads tried)
        self._pending: dict[tuple[str, int], tuple[int, int, int]] = {}

    def check(self, source: tuple[str, int], offset: int, start: int) -> tuple[str, int]:
        """(`TAKE`, offset), (`FOUND` or `SEEK`, the offset to read from), or (`PASS`, the
        start of the real hole the record comes after)."""
        expected = self._next.get(source, start)
        if offset < expected:
            # Delivered again (Faust's seek after a rebalance or a recovery): taken again, never
            # skipped (a start guessed too high must not drop records); the ledger folds repeats
            # once. Holes are still measured from the furthest record taken.
            return TAKE, offset
        pending = self._pending.get(source)
        if offset > expected:
            if pending is None or pending[0] != expected:
                self._pending[source] = (expected, offset, 1)
                return FOUND, expected
            if offset > pending[1]:
                # Queued before the seek, or read after it while the consumer dropped the hole
                # again: seek again, without counting it as a read of the hole.
                return SEEK, expected
            if pending[2] < self.retries:
                self._pending[source] = (expected, offset, pending[2] + 1)
                return SEEK, expected
        self._next[source] = offset + 1
        if pending is not None:
            del self._pending[source]
            if offset > expected:
                return PASS, expected
        return TAKE, offset

    def next(self, source: tuple[str, int]) -> int | None:
        """The offset after the furthest record of `source` taken; None before any."""
        return self._next.get(source)

    def holes(self) -> list[tuple[tuple[str, int], int]]:
        """(source, offset) of every hole sought and not yet read: the consumer may have dropped
        the re-read again with nothing after it to tell us, so the caller seeks again now and
        then."""
        return [(source, p[0]) for source, p in self._pending.items()]

    def drop(self, sources: set[tuple[str, int]]) -> None:
        """Forgets sources this worker no longer owns (their next owner starts afresh)."""
        for source in sources:
            self._next.pop(source, None)
            self._pending.pop(source, None)
