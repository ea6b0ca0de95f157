"""The runtime boundary: what an engine must give the pipeline's steps, and nothing more.

An engine (Faust today: agents/) consumes the topics, keeps per-key state with a changelog, sends
records and commits offsets. The steps of this package (intake, ledger, claims) decide what to do
with each record through these few shapes, so that event-time alignment, effectively-once
folding, claims, dead letters and metrics are written once, whatever runs them:

- `Store`: the state of one table, for the partition of the record being handled: a read and a
  whole-value write (the engine changelogs each write; a step awaits `changelog()` after its
  writes for a record);
- `Send`: send one record to a topic, partitioned by its key with Kafka's default partitioner,
  the journal's and the claims' records over the partition count their topic had when the
  worker started (`pinned_partitions`); the engine delivers everything sent before it commits
  any offset;
- `Where`: the topic, partition and offset of the record being handled (dead letters name it);
- `Source`: what every step needs of the engine's consumer of its topics: high watermarks, where
  each source starts (its committed offset, or its first offset with nothing committed) and the
  consumer's position (a source lost or only behind), and seeking back to where it lost its place
  (streams/pipeline/rereads.py);
- `IntakeSource`: a `Source` of the input topics that can also pause a partition (the bound on
  what alignment holds) and acknowledge a record once it reached the journal (the engine
  commits no offset past a record not acknowledged).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, NamedTuple, Protocol

from schemas import topics

#: Sends one record: (topic, key, value). Awaited for the hand-over to the producer, not delivery.
Send = Callable[[str, bytes | None, bytes], Awaitable[None]]


def pinned_partitions(journal: int, claims: int) -> Callable[[str, bytes | None], int | None]:
    """The partition an engine's `Send` gives a record of `topic` with `key`: for the journal
    and the claims, its key's partition (`topics.partition_for_key`) over the count the topic had
    when the worker started; None (the producer's partitioner) for every other topic.

    A person's state is on the journal partition of their key, a claim key's on its claims
    partition. Partitions added to these topics by hand while the worker runs
    (`kafka-topics.sh --alter`) would make the producer's partitioner, once its metadata showed
    them, send some people's entries where their state is not: they would be decided on an
    empty state. Pinned, the entries stay where the state is, and the next start refuses the
    grown topics (`streams.audit.layout`) until `mynapoint rescale` has moved everything."""
    counts: Mapping[str, int] = {topics.JOURNAL: journal, topics.CLAIMS: claims}
    partition_for_key = topics.partition_for_key

    def partition(topic: str, key: bytes | None) -> int | None:
        n = counts.get(topic)
        return None if n is None or key is None else partition_for_key(key, n)

    return partition


async def _changelogged_already() -> None:
    return None


class Store(NamedTuple):
    """One table's state for the current record's partition."""

    #: The value of a key, or None.
    read: Callable[[bytes], bytes | None]
    #: Replaces a key's value whole (table values are immutable).
    write: Callable[[bytes, bytes], None]
    #: Awaited by a step right after its writes for a record, before it sends anything else:
    #: the engine hands the writes' changelog records to its producer, so that they go out
    #: ahead of the record's other sends. Nothing to do for an engine that changelogs a write as
    #: it is made (the default), or at its checkpoint.
    changelog: Callable[[], Awaitable[None]] = _changelogged_already


class Where(Protocol):
    """The record being handled: any object with these attributes (an engine's own message)."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...


class At(NamedTuple):
    """A `Where` for engines whose messages do not have those attributes."""

    topic: str
    partition: int
    offset: int


class Source(Protocol):
    """What a step needs of the engine's consumer of its topics to read a source again where the
    consumer lost its place in it (streams/pipeline/rereads.py)."""

    def highwater(self, topic: str, partition: int) -> int | None:
        """The partition's high watermark as of the consumer's last fetch; None before one."""

    def owned(self) -> Iterable[tuple[str, int]]:
        """The (topic, partition)s of the step's topics the engine has assigned to this worker
        now."""

    def start(self, topic: str, partition: int) -> int | None:
        """Where the group resumes the partition in this assignment: its committed offset or,
        when nothing is committed, the partition's first offset (where the consumer starts it);
        None if the engine does not know it (then the source starts at its first record read,
        and records missing before that one go unnoticed)."""

    async def seek(self, topic: str, partition: int, offset: int,
                   after: int | None = None) -> None:
        """Makes the consumer read the partition again from `offset`. `after`: the offset of the
        record of this partition the step was just handed, when that record is why it seeks;
        the engine finishes handing it over first, so that its own bookkeeping of that record
        does not undo the seek."""

    def passed_over(self, topic: str, partition: int, start: int, end: int) -> None:
        """Offsets `start` to `end - 1` of the partition were read again from `start` and hold
        no records (transaction markers, aborted transactions, records removed by retention):
        the engine's commits may pass them."""

    async def position(self, topic: str, partition: int) -> int | None:
        """The offset the consumer hands over next from the partition: every record before it
        has left the consumer toward the step. None if the engine cannot tell."""

    def rebalancing(self) -> bool:
        """True while the engine rebalances: acknowledgements and seeks then wait."""


class IntakeSource(Source, Protocol):
    """What intake needs of the engine's consumer of the input topics."""

    #: Whether `pause` and `resume` work: False where the engine's consumer cannot pause one
    #: partition without stalling others (then intake's held records have no bound).
    pausable: bool

    def acknowledge(self, token: Any) -> None:
        """The record behind `token` (what the engine handed to `Intake.on_record`) is finished:
        journaled or dead-lettered. Called in offset order per partition. A token read before
        the engine's current assignment is dropped (its partition's new owner reads it again)."""

    def pause(self, topic: str, partition: int) -> None:
        """Stops fetching the partition, soon (records already fetched may still arrive), until
        `resume`; the consumer keeps its place, so no record is skipped. Only intake's own
        pauses are ever resumed by it; a rebalance clears them (intake forgets them then)."""

    def resume(self, topic: str, partition: int) -> None:
        """Fetches the partition again from where it stopped (undoes `pause`)."""
