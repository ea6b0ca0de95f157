"""What the offline commands read of an app's topics, kept on disk: `mynapoint rescale`'s snapshot
(and the journal it rebuilds from it), in a RocksDB database beside its state file, and the state
rows `mynapoint takeover` writes back in the other engine's layout, in a scratch directory; so
that their memory does not grow with the history (docs/BENCHMARKS.md, "Rescale"). Where each
record goes is decided by `streams.audit.rescale` and `streams.audit.takeover`, record by record;
this module only keeps them, in the order they are needed.

Keys, sorted by RocksDB as bytes (numbers big-endian, so they sort as numbers):

    j <partition:4> <offset:8>             the journal's records, as read: msgpack [key, value]
    c <partition:4> <offset:8>             the claims not answered yet: msgpack [key, value]
    t <table> 00 <row key>                 each table's latest row (a deleted one removed): value
    u <source> 00 <key>                    a key of the Quix state that is none of the tables' rows
    J <slot: streams.audit.rescale.JournalSlot>  the journal at M, in its order: [person, value]
    M <partition:4> <offset:8> <person>    where that person's entry of the record went: offset:8
    P                                      the plan of the journal at M, once complete: msgpack
                                           {"m": M, "folded": [per partition], "entries": count}
    i <topic> 00 <to:4> <from:4> <offset:8>  an input record to move (the inputs step): msgpack
                                           [key, value, headers]

The records and rows are written while the snapshot is read, into `<path>.tmp`, which `seal`
renames to `path` once everything is in: a run that stops before then takes the snapshot again.
The journal at M (J, M and P) is computed from the records at the first step that needs it, and
again after a crash in the middle of computing it (P is written last). The inputs to move (i) are
written by the inputs step, after the seal, and again by every run of that step.
"""

from __future__ import annotations

import itertools
import os
import shutil
import struct
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from streams.audit.rescale import (
    EntryAt,
    Header,
    JournalSlot,
    Move,
    Pending,
    Record,
    Stored,
    check_journal_partition,
    entries_at,
    merged_moves,
)
from streams.audit.takeover import QUIX_COLUMN_FAMILY, faust_row, unknown_state_key
from streams.core.ledger import UNKNOWN_AT

_AT = struct.Struct(">IQ")  # partition, offset
_MOVE = struct.Struct(">IIQ")  # new partition, old partition, offset
_SOURCE = struct.Struct(">II")  # new partition, old partition
_SLOT = struct.Struct(">IBIQI")  # JournalSlot's fields, in its order
_ENCODE = msgspec.msgpack.Encoder().encode
_PAIR = msgspec.msgpack.Decoder(tuple[bytes | None, bytes | None])
_PLAN = msgspec.msgpack.Decoder(dict[str, Any])
_PENDING = msgspec.msgpack.Decoder(tuple[bytes | None, bytes | None, list[Header]])
_PLAN_KEY = b"P"
_BATCH = 10_000  # writes per RocksDB batch


class StoreError(OSError):
    """The database could not be opened or written (a full disk, a directory not writable):
    the message names it."""


@dataclass(frozen=True)
class JournalPlan:
    """The journal at m: how many leading entries of each partition the ledger had folded, and
    how many entries there are in all."""

    m: int
    folded: list[int]
    entries: int


def _rows_prefix(table: str) -> bytes:
    return b"t" + table.encode() + b"\x00"


def _inputs_prefix(topic: str) -> bytes:
    return b"i" + topic.encode() + b"\x00"


def _next_prefix(prefix: bytes) -> bytes | None:
    """The first key after every key that starts with `prefix` (None: there is none)."""
    head = prefix.rstrip(b"\xff")
    return head[:-1] + bytes((head[-1] + 1,)) if head else None


class Snapshot:
    """The snapshot database at `path` (a directory). `create` starts one; `open` opens a sealed
    one. Not safe for two processes at once (the state file's run owns it)."""

    def __init__(self, path: Path, db: Any, *, tmp: Path | None = None) -> None:
        self.path = path
        self._db = db
        self._tmp = tmp
        self._open = True
        self._plan: JournalPlan | None = None

    # --- opening and closing -------------------------------------------------------------------

    @staticmethod
    def _open_db(path: Path, *, create: bool) -> Any:
        from rocksdict import Options, Rdict, WriteOptions

        options = Options(raw_mode=True)
        options.create_if_missing(create)
        try:
            db = Rdict(str(path), options)
        except Exception as exc:  # rocksdict raises plain Exceptions
            raise StoreError(f"cannot open {path} ({exc})") from None
        # Durable by `flush` at the points that matter, not by a write-ahead log per write.
        write = WriteOptions()
        write.disable_wal = True  # type: ignore[assignment,method-assign]  # a property
        db.set_write_options(write)
        return db

    @classmethod
    def create(cls, path: Path) -> Snapshot:
        """An empty snapshot, written at `<path>.tmp` until `seal` (an earlier one there, left by
        a run that stopped, is removed first)."""
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(path, ignore_errors=True)  # a snapshot the state file does not name
        return cls(path, cls._open_db(tmp, create=True), tmp=tmp)

    @staticmethod
    def sealed(path: Path) -> bool:
        """Whether a sealed snapshot is at `path` (what `create` writes is elsewhere until then)."""
        return (path / "CURRENT").is_file()

    @classmethod
    def open(cls, path: Path) -> Snapshot:
        """The sealed snapshot at `path`; raises FileNotFoundError when there is none,
        `StoreError` when RocksDB cannot open it."""
        if not cls.sealed(path):
            raise FileNotFoundError(path)
        return cls(path, cls._open_db(path, create=False))

    def seal(self) -> None:
        """Everything is written: flushed to disk and renamed from `<path>.tmp` to `path`."""
        assert self._tmp is not None, "sealed already"
        self._flush()
        self.close()
        os.replace(self._tmp, self.path)
        self._tmp = None
        fsync_dir(self.path.parent)
        self._db = self._open_db(self.path, create=False)
        self._open = True

    def close(self) -> None:
        if self._open:
            self._open = False
            self._db.close()

    def discard(self) -> None:
        """Closes and removes a snapshot that was not sealed (one that failed to be written
        among them: what closing it says then is of no use)."""
        try:
            self.close()
        except Exception:  # noqa: BLE001 - rocksdict's; the files are removed next
            pass
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    # --- writing, as the topics are read --------------------------------------------------------

    def add_journal(self, partition: int, records: Iterable[Stored]) -> None:
        """The next records of a journal partition, (offset, key, value)."""
        self._put((b"j" + _AT.pack(partition, offset), _ENCODE((key, value)))
                  for offset, key, value in records)

    def add_claims(self, partition: int, records: Iterable[Stored]) -> None:
        """The next records of a claims partition after the group's committed offset."""
        self._put((b"c" + _AT.pack(partition, offset), _ENCODE((key, value)))
                  for offset, key, value in records)

    def add_rows(self, table: str, rows: Iterable[Record]) -> None:
        """A Faust table's changelog records, (key, value) in their order: the latest value per
        key is kept (`streams.audit.rescale.latest_values`: a None value deletes the row)."""
        prefix = _rows_prefix(table)
        self._put((prefix + key, value) for key, value in rows if key is not None)

    def add_quix_rows(self, source: str, rows: Iterable[tuple[bytes | None, bytes | None,
                                                              bytes | None]]) -> None:
        """A Quix state changelog's records, (key, value, column family) in their order, kept
        as the rows of the Faust tables they are (`streams.audit.takeover.faust_row`), those of
        the state's own column family only; a key that is none of them is kept aside, and
        `check_quix_rows` refuses it unless a later record deleted it."""
        def keyed() -> Iterator[tuple[bytes, bytes | None]]:
            for key, value, family in rows:
                if key is None or family != QUIX_COLUMN_FAMILY:
                    continue
                found = faust_row(source, key)
                if found is None:
                    yield b"u" + source.encode() + b"\x00" + key, None if value is None else b""
                else:
                    yield _rows_prefix(found[0]) + found[1], value

        self._put(keyed())

    def check_quix_rows(self) -> None:
        """Raises `streams.audit.takeover.TakeoverError` for a key of the Quix state that is none
        of the tables' rows (it would be lost), as `takeover` does."""
        for key, _ in self._scan(b"u"):
            source, _, row = key[1:].partition(b"\x00")
            raise unknown_state_key(source.decode(), row)

    def clear_inputs(self) -> None:
        """Removes the inputs an earlier run of the inputs step wrote."""
        with self._writing():
            self._db.delete_range(b"i", b"j")

    def add_inputs(self, topic: str, records: Iterable[tuple[int, int, Pending]]) -> None:
        """Input records of `topic` to move, (new partition, old partition, (offset, key, value,
        headers)); each old partition's in offset order."""
        prefix = _inputs_prefix(topic)
        self._put((prefix + _MOVE.pack(q, p, offset), _ENCODE((key, value, headers)))
                  for q, p, (offset, key, value, headers) in records)

    def _where(self) -> Path:
        return self._tmp if self._tmp is not None else self.path

    @contextmanager
    def _writing(self) -> Iterator[None]:
        try:
            yield
        except Exception as exc:  # rocksdict raises plain Exceptions (a full disk among them)
            raise StoreError(f"cannot write to {self._where()} ({exc})") from None

    def _write(self, batch: Any) -> None:
        with self._writing():
            self._db.write(batch)

    def _flush(self) -> None:
        with self._writing():
            self._db.flush()

    def _put(self, items: Iterable[tuple[bytes, bytes | None]]) -> None:
        # Each item replaces its key's value, or deletes it (a None value), in the order they
        # come: for a changelog's records, as compaction keeps it
        # (`streams.audit.rescale.latest_values`). A batch applies its writes in order too.
        from rocksdict import WriteBatch

        batch = WriteBatch(raw_mode=True)
        for key, value in items:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
            if batch.len() >= _BATCH:
                self._write(batch)
                batch = WriteBatch(raw_mode=True)
        if not batch.is_empty():
            self._write(batch)

    # --- reading -------------------------------------------------------------------------------

    def _scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        end = _next_prefix(prefix)
        for key, value in self._db.items(from_key=prefix):
            if end is not None and key >= end:
                return
            yield key, value

    def _count(self, prefix: bytes) -> int:
        return sum(1 for _ in self._scan(prefix))

    def journal(self) -> Iterator[tuple[int, Stored]]:
        """The journal's records, (partition, (offset, key, value)), by partition and offset."""
        for key, value in self._scan(b"j"):
            p, offset = _AT.unpack_from(key, 1)
            k, v = _PAIR.decode(value)
            yield p, (offset, k, v)

    def journal_records(self) -> Iterator[Stored]:
        return (record for _, record in self.journal())

    def claims(self) -> Iterator[Record]:
        """The claims not answered yet, (key, value), by old partition and offset."""
        return (_PAIR.decode(value) for _, value in self._scan(b"c"))

    def rows(self, table: str) -> Iterator[tuple[bytes, bytes]]:
        """A table's latest rows, (key, value), by key."""
        prefix = _rows_prefix(table)
        return ((key[len(prefix):], value) for key, value in self._scan(prefix))

    def input_moves(self, topic: str) -> Iterator[Move]:
        """The input records of `topic` to move, by new partition, each in the order to append
        them (`streams.audit.rescale.merged_moves` of its old partitions' records)."""
        prefix = _inputs_prefix(topic)
        # The (new, old) partition pairs present, found by seeking past each one's records.
        pairs: list[tuple[int, int]] = []
        at = self._first(prefix, prefix)
        while at is not None:
            q, p = _SOURCE.unpack_from(at, len(prefix))
            pairs.append((q, p))
            at = self._first(prefix + _SOURCE.pack(q, p + 1), prefix)
        for q, group in itertools.groupby(pairs, key=lambda pair: pair[0]):
            yield from merged_moves(topic, q, {p: self._inputs(prefix, q, p) for _, p in group})

    def _first(self, key: bytes, prefix: bytes) -> bytes | None:
        """The first key at or after `key` that starts with `prefix`."""
        found = next(iter(self._db.keys(from_key=key)), None)
        return found if found is not None and found.startswith(prefix) else None

    def _inputs(self, prefix: bytes, q: int, p: int) -> Iterator[Pending]:
        within = prefix + _SOURCE.pack(q, p)
        for key, value in self._scan(within):
            k, v, headers = _PENDING.decode(value)
            yield int.from_bytes(key[len(within):], "big"), k, v, headers

    def counts(self, tables: Iterable[str]) -> tuple[int, int, dict[str, int]]:
        """How many journal records, claims and rows of each of `tables` it holds."""
        return (self._count(b"j"), self.claims_count(), {t: self.row_count(t) for t in tables})

    def claims_count(self) -> int:
        return self._count(b"c")

    def row_count(self, table: str) -> int:
        return self._count(_rows_prefix(table))

    # --- the journal at m ----------------------------------------------------------------------

    def plan(self, committed: Mapping[int, int], m: int) -> JournalPlan:
        """The journal at m (`streams.audit.rescale.journal_at`, on disk): each entry in its
        slot, with where it went; computed once, and again if a run stopped while computing it.
        Raises `streams.audit.rescale.RescaleError` for a journal that cannot be rescaled."""
        if self._plan is not None and self._plan.m == m:
            return self._plan
        stored = self._db.get(_PLAN_KEY)
        if stored is not None:
            found = _PLAN.decode(stored)
            if found["m"] == m:
                self._plan = JournalPlan(m, list(found["folded"]), found["entries"])
                return self._plan
        self._db.delete_range(b"J", b"K")
        self._db.delete_range(b"M", b"N")
        self._put(self._slots(committed, m))
        self._flush()
        folded = [0] * m
        entries = 0

        def where() -> Iterator[tuple[bytes, bytes]]:
            nonlocal entries
            q, j = -1, 0
            for key, value in self._scan(b"J"):
                slot = JournalSlot(*_SLOT.unpack_from(key, 1))
                if slot.partition != q:
                    q, j = slot.partition, 0
                if not slot.pending:
                    folded[q] += 1
                person, _ = _PAIR.decode(value)
                yield (b"M" + _AT.pack(slot.old_partition, slot.old_offset) + (person or b""),
                       j.to_bytes(8, "big"))
                j += 1
                entries += 1

        self._put(where())
        self._flush()
        with self._writing():
            self._db[_PLAN_KEY] = _ENCODE({"m": m, "folded": folded, "entries": entries})
        self._flush()
        self._plan = JournalPlan(m, folded, entries)
        return self._plan

    def _slots(self, committed: Mapping[int, int], m: int) -> Iterator[tuple[bytes, bytes]]:
        at: list[int] = []  # [partition, first offset, end] of the partition being read

        def check() -> None:
            if at:
                check_journal_partition(at[0], at[1], at[2], committed.get(at[0], 0))

        for p, (offset, key, value) in self.journal():
            if not at or at[0] != p:
                check()
                at[:] = [p, offset, offset + 1]
            at[2] = offset + 1
            for slot, person, one in entries_at(p, offset, key, value, committed.get(p, 0), m):
                yield b"J" + _SLOT.pack(*slot), _ENCODE((person, one))
        check()

    def journal_at(self, q: int) -> Iterator[Record]:
        """The records of partition q of the journal at m (after `plan`), in order."""
        return (_PAIR.decode(value) for _, value in self._scan(b"J" + q.to_bytes(4, "big")))

    def where(self, at: EntryAt) -> int:
        """Where the entry `at` (old partition, old offset, person) went: its offset at m (after
        `plan`), or `UNKNOWN_AT`."""
        p, offset, person = at
        found = self._db.get(b"M" + _AT.pack(p, offset) + person)
        return UNKNOWN_AT if found is None else int.from_bytes(found, "big")


def fsync_dir(path: Path) -> None:
    """Makes what was renamed or created in directory `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
