"""Reading a source again where the engine's consumer lost its place in it, for every step.

A consumer can pass over records without a word (docs/ARCHITECTURE.md, "Holes found on Apache
Kafka"): Faust's fetch loop drops a batch it takes for already read after a seek, and a rebalance
can leave a source's last records fetched and never handed to the agent. Whatever the cause, a
step would then wait for ever (intake, for alignment) or go on without them (the ledger, the
claims). So each step checks the offsets it is handed, through one `Rereads` per step:

- **holes**: a record that comes after offsets never handed over is not taken; the consumer is
  sought back to the first missing offset (`streams.core.align.Continuity`), and sought again
  every `RESEEK_EVERY` while the hole is not read. A seek in answer to a record waits until the
  engine is done handing it over (`Source.seek`, `after`). A hole that three reads from its start
  do not fill holds no records: it is logged, and the engine's commits may pass it
  (`Source.passed_over`);
- **a starved source**: the broker holds more of a source than was handed over, and nothing came
  for `STARVED_AFTER` seconds (a record lost at the end of a source leaves no later record to
  show the hole): read again from its next offset. A source the consumer has not even handed over
  its next record of (its position is still there) is only behind, read again only after
  `STARVED_BEHIND_AFTER`;
- **an owned source that delivered nothing** since this worker took it, although the broker holds
  more of it: read again from where it resumes after `STARVED_AFTER`.

Every re-read is logged and counted in `mynapoint_rereads_total{topic}`. What is read again is
handled again: intake journals by source offset, and the ledger and the claims fold a repeat once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable

from streams.core.align import FOUND, PASS, TAKE, Continuity
from streams.pipeline import metrics
from streams.pipeline.runtime import Source

log = logging.getLogger("mynapoint")

#: How often the engine should call `reseek` (seconds): a hole sought and not yet read is sought
#: again, and starved sources are looked for.
RESEEK_EVERY = 1.0
#: A source the broker has more of that delivered nothing for this long (seconds) is read again
#: from its next offset: the consumer has lost its place in it.
STARVED_AFTER = 10.0
#: The same for a source the consumer has not even handed over its next record of (its position
#: is still there): it is behind, not lost. A consumer catching up on a backlog serves some
#: sources for many seconds before others, and a seek would throw away what it has fetched of
#: that source. Read again only after this long: a stuck fetch.
STARVED_BEHIND_AFTER = 60.0

#: (topic, partition, next offset, seconds silent) of a source that may be starved.
Starved = tuple[str, int, int, float]
#: The same, and whether the source has delivered nothing since this worker took it.
Silent = tuple[str, int, int, float, bool]


def _idle() -> bool:
    return False


class Rereads:
    """One step's sources: the holes in what it was handed, and the sources that went silent.

    The step calls `admit` for each record before handling it, `reseek` every `RESEEK_EVERY`, and
    `revoked` when the engine takes sources away, all on one event loop.
    """

    __slots__ = ("source", "busy", "continuity", "_heard", "_sought", "_undelivered")

    def __init__(self, source: Source) -> None:
        self.source = source
        #: Whether records wait in the engine's buffer for the step. A source is not taken for
        #: starved meanwhile: its silence may be the step's own backlog (a burst of one partition
        #: queued ahead of the others), and its next records may be in that buffer.
        self.busy: Callable[[], bool] = _idle
        #: The next offset of each source, and its holes.
        self.continuity = Continuity()
        # When each source last handed over a record (monotonic seconds).
        self._heard: dict[tuple[str, int], float] = {}
        # When a starved source was last sought: sought again only after another STARVED_AFTER.
        self._sought: dict[tuple[str, int], float] = {}
        # Owned sources that have delivered nothing yet, since when.
        self._undelivered: dict[tuple[str, int], float] = {}

    async def admit(self, topic: str, partition: int, offset: int, now: float) -> bool:
        """Whether the step handles this record now. False after a hole: the consumer was sought
        back to the hole, and this record comes again after it."""
        source = self.source
        key = (topic, partition)
        # A source starts at its committed offset, or at its first offset if nothing is
        # committed; the engine may not know it (then at its first record).
        start = source.start(topic, partition)
        verdict, at = self.continuity.check(key, offset, offset if start is None else start)
        self._heard[key] = now
        if verdict is TAKE:
            return True
        if verdict is PASS:
            # A hole read again from its start, each time without records: there are none.
            log.warning("%s/%s: offsets %s to %s hold no records (transaction markers, aborted "
                        "transactions, or removed by retention); going on from %s", topic,
                        partition, at, offset - 1, offset)
            source.passed_over(topic, partition, at, offset)
            return True
        if verdict is FOUND:  # one warning per hole; SEEK: the same one, sought again
            log.warning("%s/%s: the consumer skipped offsets %s to %s; reading them again",
                        topic, partition, at, offset - 1)
            metrics.labelled(metrics.REREADS, topic).inc()
        await source.seek(topic, partition, at, after=offset)
        return False

    def next_to_read(self, topic: str, partition: int, next_offset: int) -> int:
        """Where a source resumes: `next_offset`, or its start if later (the group's committed
        offset: a source this worker has read nothing of since it took it starts there, and
        everything before was handled by an earlier owner)."""
        return max(next_offset, self.source.start(topic, partition) or 0)

    def has_more(self, topic: str, partition: int, next_offset: int) -> bool:
        """Whether the broker holds records of the source from where it resumes, by the high
        watermark of the consumer's last fetch (False before any fetch answered for it)."""
        hw = self.source.highwater(topic, partition)
        return hw is not None and hw > self.next_to_read(topic, partition, next_offset)

    def starved(self, now: float, after: float) -> list[Starved]:
        """The sources that handed over something, that the broker has more of, and that were
        silent for `after` seconds (for steps that do not track their sources otherwise)."""
        out = []
        for (topic, partition), heard in self._heard.items():
            # None: only records before the committed offset came (delivered again).
            nxt = self.continuity.next((topic, partition)) or 0
            if now - heard >= after and self.has_more(topic, partition, nxt):
                out.append((topic, partition, nxt, now - heard))
        return out

    async def reseek(self, now: float,
                     starved: Callable[[], Iterable[Starved]] | None = None,
                     watched: Callable[[str, int], bool] | None = None,
                     paused: Collection[tuple[str, int]] = ()) -> None:
        """Seeks again every hole sought and not yet read (its re-read may have been dropped
        again with nothing after it to ask for another seek), reads again the starved sources
        (`starved()`; by default `self.starved`), and the owned sources that delivered nothing
        (`watched(topic, partition)` False; by default: never handed over a record), each by the
        position rule. Sources in `paused` deliver nothing by design and are left alone. Nothing
        during a rebalance, and only the holes while the step is `busy`."""
        source = self.source
        if source.rebalancing():
            return
        for (topic, partition), offset in self.continuity.holes():
            await source.seek(topic, partition, offset)
        if self.busy():
            return
        starving = starved() if starved is not None else self.starved(now, STARVED_AFTER)
        candidates: list[Silent] = [(*c, False) for c in starving]
        candidates += self._undelivered_for(now, watched or self._delivered)
        for topic, partition, nxt, quiet, taken in candidates:
            key = (topic, partition)
            if key in paused or not self._due(key, now):
                continue
            at = self.next_to_read(topic, partition, nxt)
            if quiet < STARVED_BEHIND_AFTER:
                if await self._behind(topic, partition, at):
                    continue
                if source.rebalancing():
                    return  # began while the consumer was asked: no seeks now
            if taken:
                log.warning("%s/%s: nothing delivered for %.0f s since this worker took it, "
                            "although the broker holds offsets up to %s; reading it from offset "
                            "%s", topic, partition, quiet, source.highwater(topic, partition), at)
            else:
                wait = STARVED_BEHIND_AFTER if quiet >= STARVED_BEHIND_AFTER else STARVED_AFTER
                log.warning("%s/%s: nothing read for %.0f s although the broker holds offsets up "
                            "to %s; reading again from offset %s", topic, partition, wait,
                            source.highwater(topic, partition), at)
            await self._read_again(topic, partition, at, now)

    async def _behind(self, topic: str, partition: int, at: int) -> bool:
        """Whether the consumer has not handed over the record at `at` yet: it has not come to
        it (or is about to hand it over), so the source is behind, not lost."""
        position = await self.source.position(topic, partition)
        return position is not None and position <= at

    def _due(self, key: tuple[str, int], now: float) -> bool:
        """Whether the source may be read again now: at most once per `STARVED_AFTER`."""
        return now - self._sought.get(key, float("-inf")) >= STARVED_AFTER

    def _delivered(self, topic: str, partition: int) -> bool:
        return (topic, partition) in self._heard

    async def _read_again(self, topic: str, partition: int, at: int, now: float) -> None:
        self._sought[(topic, partition)] = now
        metrics.labelled(metrics.REREADS, topic).inc()
        await self.source.seek(topic, partition, at)

    def _undelivered_for(self, now: float, watched: Callable[[str, int], bool]) -> list[Silent]:
        """The owned sources that have delivered nothing for `STARVED_AFTER` seconds since this
        worker took them, although the broker has more of them (or the consumer has not even
        fetched them: no high watermark), as (topic, partition, 0, seconds, True); `reseek` reads
        them again from where they resume. Seen on Apache Kafka with Faust after a rescale: the
        worker owned the new partitions and read nothing of them for minutes. The starved check
        cannot see such a source: it watches only the sources that delivered something
        (`watched`). The same position rule applies: one the consumer has not come to yet is only
        behind (a catch-up serving other partitions first; a seek would throw away what it
        fetched of it), read again only after `STARVED_BEHIND_AFTER`."""
        undelivered: dict[tuple[str, int], float] = {}
        out: list[Silent] = []
        for topic, partition in self.source.owned():
            if watched(topic, partition):
                continue
            if (self.source.highwater(topic, partition) is not None
                    and not self.has_more(topic, partition, 0)):
                continue
            key = (topic, partition)
            since = undelivered[key] = self._undelivered.get(key, now)
            if now - since >= STARVED_AFTER:
                out.append((topic, partition, 0, now - since, True))
        self._undelivered = undelivered
        return out

    def revoked(self, sources: set[tuple[str, int]]) -> None:
        """Forgets sources the engine took away (their next owner starts afresh)."""
        self.continuity.drop(sources)
        for key in sources:
            self._heard.pop(key, None)
            self._sought.pop(key, None)
            self._undelivered.pop(key, None)
