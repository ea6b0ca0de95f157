"""Rescale, the pure part: what every topic of an app holds at M partitions, from what it holds at N.

`mynapoint rescale` (clients/rescale.py does the Kafka I/O, docs/ARCHITECTURE.md "Rescaling")
reads the app's topics with its workers stopped and rewrites them so that workers started with
`--partitions M` go on as if the deployment had always had M partitions. Everything here is a
function of records read; nothing is decided again:

- Journal: every entry goes to its person's partition at M (`partition_for_key`), each person's
  entries in their order. A record of several entries (`schemas.journal.JournalBatch`) is split:
  each entry becomes a record of its own, keyed by its person (two persons of a batch may well
  live on different partitions at M). Per new partition, the entries the ledger had already
  folded (before the group's committed offset of their old partition) come first, then those it
  had not: the group's committed offset of the new partition is the count of the first, so the
  fresh ledger folds exactly the ones the old one had not (or re-folds them as repeats, as after
  any crash).
- Tables (persons, claims, timeline): each changelog's latest value per key, on the partition
  the live worker writes that key to at M: a person's rows on the person's partition, a claims
  row on its claim key's partition (`streams.core.claims.claim_of_row`). The values are copied,
  not refolded: the live tables are the truth the workers restore (replay checks them against
  the journal, before and after). The journal offsets the rows remember (the ledger record's
  memory of its entries, a timeline head's `upto`) move with the entries they name.
- Claims: the requests the claims agent had not answered yet (after the committed offset), on
  their key's partition at M.
- Inputs: the records after the group's committed offset that are not in the journal yet (a
  record intake journaled but had not acknowledged is known by its source in the journal, and is
  not moved: it is decided already) move to their key's partition at M, each old partition's in
  offset order; new partitions fed by several old ones get them merged by event time, so the
  aligner releases them in the documented event-time order.

The redelivery memory needs no change: it is per source partition ("topic/partition" -> last
offset) and partitions only grow, so every offset a record gets after the growth is new to it.
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgspec

from schemas.journal import JOURNAL_ENCODER, EventEntry
from schemas.topics import partition_for_key
from streams.core.claims import claim_of_row
from streams.core.ledger import RECORD_ENCODER, UNKNOWN_AT, with_journal_offsets
from streams.core.timeline import person_of_row, with_upto
from streams.core.versions import (
    VersionError,
    decode_ledger_record,
    is_journal_batch,
    journal_entries,
)

# One stored record: (key, value). A partition's records are a list in offset order.
Record = tuple[bytes | None, bytes | None]
# A record header as Kafka clients read it: a header's value may be null.
Header = tuple[str, bytes | None]
# Where a journal entry was and which person's it is: (old partition, old offset, person key).
# The person is part of it because the entries of a batch share their record's offset.
EntryAt = tuple[int, int, bytes]


class RescaleError(ValueError):
    """The topics cannot be rescaled as they are (the message says what to do)."""


def routing_key(table: str, row_key: bytes) -> bytes:
    """The key whose partition holds a table row: the person's, or the claim key's."""
    if table == "claims":
        return claim_of_row(row_key)
    if table == "timeline":
        return person_of_row(row_key)
    return row_key


def latest_values(records: Iterable[Record],
                  into: dict[bytes, bytes] | None = None) -> dict[bytes, bytes]:
    """A changelog's latest value per key, as compaction keeps it (a None value deletes); folded
    into `into` when given (records read piece by piece, each key's in their order)."""
    out: dict[bytes, bytes] = {} if into is None else into
    for key, value in records:
        if key is None:
            continue
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def table_at(table: str, latest: Mapping[bytes, bytes], m: int, *, n: int = 0,
             moved: Mapping[EntryAt, int] | None = None) -> list[list[Record]]:
    """A table's rows on their partitions at m, in a deterministic order (by key): `row_at` of
    each row.

    With `moved` (`JournalAt.moved`, the journal of n partitions rebuilt), the journal offsets a
    row remembers are moved with the entries: the ledger record's memory of its entries' offsets
    and a timeline head's `upto`, both compared with the journal's offsets by the live worker.
    An offset a person's row remembers names that person's entry there, so it moves to where that
    entry went.
    """
    out: list[list[Record]] = [[] for _ in range(m)]
    for q, key, value in rows_at(table, sorted(latest.items()), m, n=n,
                                 where=moved_lookup(moved)):
        out[q].append((key, value))
    return out


def moved_lookup(moved: Mapping[EntryAt, int] | None) -> Callable[[EntryAt], int] | None:
    """`moved` (`JournalAt.moved`) as the `where` of `row_at`: an entry missing from it went
    nowhere (`UNKNOWN_AT`)."""
    return None if moved is None else (lambda at: moved.get(at, UNKNOWN_AT))


def rows_at(table: str, rows: Iterable[tuple[bytes, bytes]], m: int, *, n: int = 0,
            where: Callable[[EntryAt], int] | None = None) -> Iterator[tuple[int, bytes, bytes]]:
    """(partition at m, key, value there) of each of a table's latest `rows` (`row_at`), in
    their order: `table_at` gives them by key, and so does a store read in key order."""
    for key, value in rows:
        q, moved = row_at(table, key, value, m, n=n, where=where)
        yield q, key, moved


def row_at(table: str, key: bytes, value: bytes, m: int, *, n: int = 0,
           where: Callable[[EntryAt], int] | None = None) -> tuple[int, bytes]:
    """A table row's partition at m and its value there: with `where` (an entry of the journal
    at n -> its offset at m, `UNKNOWN_AT` for none), the journal offsets a persons row or a
    timeline head remembers moved with their entries (`table_at`)."""
    if where is not None and table in ("persons", "timeline") and b"\x00" not in key:
        value = _with_moved_offsets(table, key, value, partition_for_key(key, n), where)
    return partition_for_key(routing_key(table, key), m), value


def _with_moved_offsets(table: str, key: bytes, value: bytes, p: int,
                        where: Callable[[EntryAt], int]) -> bytes:
    # `key` is the person's: a persons row's key, or a timeline head's (a chunk's has a \x00).
    def move(offset: int) -> int:
        return where((p, offset, key))

    if table == "timeline":
        try:
            return with_upto(value, move)
        except msgspec.DecodeError:
            return value  # not a head this version can read: copied as it is
    try:
        record = decode_ledger_record(value)
    except VersionError:
        return value  # copied as stored; the worker dead-letters the person's entries, as before
    return RECORD_ENCODER.encode(with_journal_offsets(record, move))


def claims_at(requests: Iterable[Record], m: int) -> list[list[Record]]:
    """The claims topic at m partitions: each request on its key's partition (a keyless one,
    which no worker writes, on 0), in the order read."""
    out: list[list[Record]] = [[] for _ in range(m)]
    for key, value in requests:
        out[claim_partition(key, m)].append((key, value))
    return out


def claim_partition(key: bytes | None, m: int) -> int:
    """The partition of a claims request at m: its key's (a keyless one, which no worker writes,
    on 0)."""
    return partition_for_key(key, m) if key is not None else 0


# A journal record as read: (offset, key, value).
Stored = tuple[int, bytes | None, bytes | None]


@dataclass
class JournalAt:
    """The journal at m partitions; how many leading entries of each the ledger had folded; and
    where each entry went: (old partition, old offset, person key) -> new offset (on the person's
    partition)."""

    partitions: list[list[Record]]
    folded: list[int]
    moved: dict[EntryAt, int]


def journal_at(old: Mapping[int, list[Stored]], committed: Mapping[int, int],
               m: int) -> JournalAt:
    """`old[p]` holds partition p's records from its first offset, in order (the pipeline never
    compacts or truncates the journal: `RescaleError` if it does not start at 0, or `committed`
    lies beyond it: `check_journal_partition`). Every record at m holds one entry: a batch's
    entries are written one a record, on their persons' partitions (`entries_at`). A new
    partition holds the entries the ledger had folded, then the others, each side in the order
    (old partition, old offset, place in the record): `JournalSlot` sorts so."""
    # Per new partition: (old partition, old offset, person, value) of each entry, in order.
    done: list[list[tuple[int, int, bytes, bytes | None]]] = [[] for _ in range(m)]
    todo: list[list[tuple[int, int, bytes, bytes | None]]] = [[] for _ in range(m)]
    for p in sorted(old):
        records = old[p]
        upto = committed.get(p, 0)
        check_journal_partition(p, records[0][0] if records else 0,
                                records[-1][0] + 1 if records else 0, upto)
        for offset, key, value in records:
            for slot, person, one in entries_at(p, offset, key, value, upto, m):
                side = todo if slot.pending else done
                side[slot.partition].append((p, offset, person, one))
    moved: dict[EntryAt, int] = {}
    partitions: list[list[Record]] = []
    for q in range(m):
        rows = done[q] + todo[q]
        for j, (p, offset, person, _) in enumerate(rows):
            moved[(p, offset, person)] = j
        partitions.append([(person, value) for _, _, person, value in rows])
    return JournalAt(partitions, [len(d) for d in done], moved)


def check_journal_partition(p: int, first: int, end: int, committed: int) -> None:
    """Raises `RescaleError` unless journal partition p holds its records from offset 0 (`first`)
    and the group's `committed` offset lies within its `end`."""
    if first > 0 or committed > end:
        raise RescaleError(
            f"journal partition {p} starts at offset {first} and ends at {end}, the group "
            f"committed {committed}: its start was deleted by retention; rescaling needs the "
            "whole journal (keep it forever: retention.ms=-1)")


class JournalSlot(NamedTuple):
    """Where an entry of the journal goes at m: its new partition, and its rank there. Slots
    sort in the order the new partition holds its entries (the folded ones first)."""

    partition: int
    pending: bool  # after the group's committed offset: not folded by the ledger yet
    old_partition: int
    old_offset: int
    place: int  # its place in its record (a batch's entries share the record's offset)


def entries_at(p: int, offset: int, key: bytes | None, value: bytes | None, committed: int,
               m: int) -> list[tuple[JournalSlot, bytes, bytes | None]]:
    """The entries of the journal record at (p, offset), each with its slot at m, its person
    and the value of its record of one (`_single_records`); `committed`: the group's offset on p.
    A batch was folded up to its record's offset as a whole: all its entries, or none."""
    if key is None:
        raise RescaleError(f"journal partition {p} offset {offset} has no key: only "
                           "mynapoint workers may write to the journal")
    pending = offset >= committed
    return [(JournalSlot(partition_for_key(person, m), pending, p, offset, i), person, one)
            for i, (person, one) in enumerate(_single_records(key, value))]


def _single_records(key: bytes, value: bytes | None) -> list[tuple[bytes, bytes | None]]:
    """A journal record as records of one entry each, (person key, value), in its order.

    A record of one entry, of any version, is kept as it is stored (never rewritten); a batch's
    entries are each encoded alone. A value no version reads goes where its key sends it, as
    stored: the ledger at m dead-letters it, as the one at n did.
    """
    if value is None or not is_journal_batch(value):
        return [(key, value)]
    try:
        entries = journal_entries(key, value)
    except VersionError:
        return [(key, value)]
    return [(person, JOURNAL_ENCODER.encode(entry)) for person, entry in entries]


def journaled_sources(records: Iterable[Stored],
                      since: Mapping[str, Mapping[int, int]] | None = None,
                      ) -> set[tuple[str, int, int]]:
    """The input records (topic, partition, offset) the journal's `records` hold (those in
    batches too); with `since` (the group's committed offsets of the inputs), only those at or
    after them: the only ones a rescale asks about, so the set stays as small as the inputs'
    uncommitted tail."""
    out: set[tuple[str, int, int]] = set()
    for _offset, key, value in records:
        if value is None:
            continue
        try:
            entries = journal_entries(key or b"", value)
        except VersionError:
            continue
        for _person, entry in entries:
            if type(entry) is EventEntry and (
                    since is None
                    or entry.offset >= since.get(entry.topic, {}).get(entry.partition, 0)):
                out.add((entry.topic, entry.partition, entry.offset))
    return out


@dataclass
class Move:
    """An input record to append to partition `to` of `topic` (from `source`: partition, offset)."""

    topic: str
    to: int
    source: tuple[int, int]
    key: bytes | None
    value: bytes | None
    headers: list[Header] = field(default_factory=list)

    @property
    def source_id(self) -> str:
        return source_id(self.topic, *self.source)


def source_id(topic: str, partition: int, offset: int) -> str:
    """What the header of a moved input record says of where it was (a re-run knows it by it)."""
    return f"{topic}/{partition}/{offset}"


_TIME = msgspec.json.Decoder(dict[str, Any])


def _event_time(value: bytes | None) -> str:
    """The record's `occurred_at` as sent (ISO 8601 text); "" when it has none (a dead letter to
    be: it keeps its place behind the record before it)."""
    if not value:
        return ""
    try:
        obj = _TIME.decode(value)
    except msgspec.DecodeError:
        return ""
    t = obj.get("occurred_at")
    return t if isinstance(t, str) else ""


Pending = tuple[int, bytes | None, bytes | None, list[Header]]
"""An input record after the group's committed offset: (offset, key, value, headers)."""


def input_target(key: bytes | None, p: int, m: int) -> int:
    """The partition at m of an input record of old partition p: its key's (a keyless record
    stays on its partition)."""
    return partition_for_key(key, m) if key is not None else p


def inputs_to_move(topic: str, p: int, records: Iterable[Pending],
                   journaled: set[tuple[str, int, int]], m: int) -> Iterator[tuple[int, Pending]]:
    """Of old partition p's records after the group's committed offset, those that move, each
    with its partition at m (`input_target`): all but the journaled ones, decided already."""
    for record in records:
        if (topic, p, record[0]) not in journaled:
            yield input_target(record[1], p, m), record


def merged_moves(topic: str, q: int, by_source: Mapping[int, Iterable[Pending]]
                 ) -> Iterator[Move]:
    """The records that go to partition q of `topic` at m, in the order to append them:
    `by_source[p]` the ones from old partition p, in offset order (`input_target` q, not
    journaled). One old partition's keep their order; several are merged by event time, each
    record ranked by the latest event time of its partition up to it (a record without one, a
    dead letter to be, keeps its place behind the record before it), ties by (p, offset)."""
    def moves(p: int, records: Iterable[Pending]) -> Iterator[Move]:
        for offset, key, value, headers in records:
            yield Move(topic, q, (p, offset), key, value, list(headers))

    sources = sorted(by_source.items())
    if len(sources) == 1:
        yield from moves(*sources[0])
        return

    def keyed(p: int, records: Iterable[Pending]) -> Iterator[tuple[float, int, int, Move]]:
        last = float("-inf")
        for mv in moves(p, records):
            t = _event_time(mv.value)
            try:
                last = max(last, dt.datetime.fromisoformat(t).timestamp()) if t else last
            except ValueError:
                pass
            yield (last, p, mv.source[1], mv)

    for x in heapq.merge(*(keyed(p, records) for p, records in sources), key=lambda x: x[:3]):
        yield x[3]


def input_moves(topic: str, pending: Mapping[int, list[Pending]],
                journaled: set[tuple[str, int, int]], m: int) -> dict[int, list[Move]]:
    """Per new partition of `topic`, the records to append, in order (`merged_moves`):
    `pending[p]` holds the records of old partition p after the group's committed offset; the
    journaled ones are decided already and stay. (The rescale does the same on disk.)"""
    per_target: dict[int, dict[int, list[Pending]]] = {}
    for p in sorted(pending):
        for q, record in inputs_to_move(topic, p, pending[p], journaled, m):
            per_target.setdefault(q, {}).setdefault(p, []).append(record)
    return {q: list(merged_moves(topic, q, by_source)) for q, by_source in per_target.items()}
