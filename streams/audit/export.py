"""The export file: a pipeline's recorded history in one JSONL file an auditor can take away.

Pure (no Kafka): `clients.history` reads the topics and writes lines with the functions here;
`read_export` reads a file back into a `History`, which `streams.audit.replay`, `streams.audit.explain` and
`streams.audit.totals` take whatever its source. The format is documented in docs/AUDIT.md:

    {"record": "header", "format": "mynapoint-export", "format_version": 1, "exported_at": ...,
     "rules_version": ..., "config_toml": ..., "app_id": ..., "source": ..., "ends": {...}}
    (and "starts": {"mynapoint.journal": {"P": N}} when the broker no longer held the first N
    offsets of journal partition P)
    {"record": "journal", "partition": 0, "offset": 7, "key": "P0000042", "entry": {...}}
    {"record": "outcome", "topic": "mynapoint.grants", "partition": 1, "offset": 3,
     "key": "P0000042", "outcome": {...}}
    {"record": "table", "table": "persons", "partition": 2, "offset": 9, "key": "P0000042",
     "value_b64": "..."}
    {"record": "end", "journal": N, "outcomes": M, "table": K}

Stored values are written as they were stored, in their own version: a journal entry is its
msgpack map as JSON with the event's `value` as the original JSON text; a table value is its
msgpack bytes in base64. Readers upgrade them with `streams.core.versions`. A journal line holds
one entry: the entries of a journal record of several (`schemas.journal.JournalBatch`) are written
one a line, each with its person's key and the record's partition and offset, so a reader of the
file never meets a batch.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, cast

import msgspec

from schemas.codec import DECODE_ERRORS, EVENT_DECODER
from schemas.journal import JOURNAL_DECODER, EventEntry, JournalEntry
from schemas.topics import JOURNAL, partition_for_key
from streams.audit.gcpause import no_cyclic_gc
from streams.core.ledger import LedgerRecord
from streams.core.timeutil import JST
from streams.core.versions import (
    VersionError,
    decode_journal_entry,
    decode_ledger_record,
    is_current_journal_entry,
    journal_entries,
    journal_entry_from_builtins,
    stored_builtins,
)

FORMAT = "mynapoint-export"
FORMAT_VERSION = 1
PERSONS_TABLE = "persons"

_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.decode


class ExportError(ValueError):
    """The file is not a readable export (the message names the line)."""


@dataclass(slots=True)
class Published:
    """One record of an output topic."""

    topic: str
    partition: int
    offset: int
    outcome: dict[str, Any] | None  # None when the value is not a JSON object
    error: str | None = None


def rules_versions(published: Iterable[Published]) -> dict[str, int]:
    """How many published decisions and grants carry each rules version (the configuration the
    pipeline decided them under)."""
    return _count_versions(rec.outcome for rec in published)


def stored_rules_versions(values: Iterable[bytes | None]) -> dict[str, int]:
    """`rules_versions` of output records as stored (JSON values; unreadable ones count for none)."""
    return _count_versions(decode_outcome(raw)[0] for raw in values)


def other_rules(versions: dict[str, int], version: str) -> str | None:
    """The rules versions in `versions` other than `version`, with their counts, as a note shows
    them ("r-... (1,234), ..."); None when there is none."""
    other = [f"{v} ({n:,})" for v, n in sorted(versions.items()) if v != version]
    return ", ".join(other) or None


def _count_versions(outcomes: Iterable[dict[str, Any] | None]) -> dict[str, int]:
    versions: Counter[str] = Counter()
    for obj in outcomes:
        rv = obj.get("rules_version") if obj is not None else None
        if isinstance(rv, str):
            versions[rv] += 1
    return dict(sorted(versions.items()))


@dataclass
class History:
    """What replay, explain and audit read: from the topics or from an export file.

    `journal` holds, per journal partition in offset order, (offset, key, entry) with the entry
    already upgraded to the current version and `key` its person's (the record's key; for an
    entry of a batch, the person the batch names for it). The entries of one journal record share
    its offset, in the record's order: an offset names at most one entry of a person, not one
    item of the list. `records` is the live `persons` table (latest value per key, upgraded), or
    None when it was not read.
    """

    journal: dict[int, list[tuple[int, str | None, JournalEntry]]] = field(default_factory=dict)
    outcomes: list[Published] = field(default_factory=list)
    records: dict[str, LedgerRecord] | None = None
    header: dict[str, Any] = field(default_factory=dict)
    # Stored values that could not be read: (where, why). Replay reports them as differences.
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    # Journal partitions whose first offsets the broker no longer held when the history was
    # read (retention, DeleteRecords): partition -> its log start (`note_deleted_starts`).
    deleted: dict[int, int] = field(default_factory=dict)
    source: str = ""

    def entries(self) -> Iterator[tuple[str | None, JournalEntry]]:
        """Every journal entry with its key, partition after partition, each in offset order."""
        for p in sorted(self.journal):
            for _offset, key, entry in self.journal[p]:
                yield key, entry

    @property
    def journal_size(self) -> int:
        return sum(len(v) for v in self.journal.values())


def person_of(key: str | None, entry: JournalEntry) -> str:
    """The person an entry belongs to: the record key (as the ledger uses it), else the entry's."""
    if key is not None:
        return key
    if type(entry) is EventEntry:
        return EVENT_DECODER.decode(entry.value).person_id
    return entry.person_id  # type: ignore[union-attr]


# --- a subset of the partitions (replay in parallel) ---------------------------------------------


class SubsetError(ValueError):
    """A --partitions value that cannot be used (the message says what to give)."""


@dataclass(frozen=True)
class Subset:
    """Journal partitions `only` of a journal of `of` partitions: the people whose journal
    partition (`schemas.topics.partition_for_key` of their id) is one of them.

    Everything of a person (journal entries, table rows, outcomes) belongs to that person's
    subset, whatever partition of an output topic it was published to (output topics keep the
    partitions of before a rescale), so the subsets of a partition of 0..of-1 divide the history
    between them: each person, entry, outcome and table row is in exactly one.
    """

    only: frozenset[int]
    of: int

    def has_person(self, person_id: str) -> bool:
        return partition_for_key(person_id.encode("utf-8", "surrogateescape"), self.of) in self.only

    def has_record(self, person_id: str | None, partition: int) -> bool:
        """An output record by its person; one without a person (an unreadable record, a dead
        letter of a record without one) by the partition it was published to."""
        if person_id:
            return self.has_person(person_id)
        return partition % self.of in self.only

    def has_outcome(self, published: Published) -> bool:
        """A published outcome, as `has_record` keeps output records."""
        o = published.outcome
        person = o.get("person_id") if o is not None else None
        return self.has_record(person if isinstance(person, str) else None, published.partition)

    def as_dict(self) -> dict[str, Any]:
        """How a subset is written in an export's header and a report ("partitions")."""
        return {"only": sorted(self.only), "of": self.of}


def parse_partitions(spec: str) -> frozenset[int]:
    """"0-3", "5", "0-3,8,10-11" -> the partition numbers."""
    out: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            a = int(lo)
            b = int(hi) if sep else a
        except ValueError:
            raise SubsetError(f"--partitions {spec!r}: give partition numbers and ranges, such as "
                              "0-3 or 0-3,8,10-11") from None
        if a < 0 or b < a:
            raise SubsetError(f"--partitions {spec!r}: {part!r} is not a range of partitions "
                              "(first-last, first <= last, from 0)")
        out.update(range(a, b + 1))
    if not out:
        raise SubsetError("--partitions: give at least one partition, such as 0-3")
    return frozenset(out)


def make_subset(only: frozenset[int], journal_partitions: int) -> Subset:
    if journal_partitions < 1:
        raise SubsetError("the journal has no partitions: nothing to divide")
    beyond = sorted(p for p in only if p >= journal_partitions)
    if beyond:
        raise SubsetError(f"--partitions: the journal has {journal_partitions} partitions "
                          f"(0-{journal_partitions - 1}); {beyond} do not exist")
    return Subset(only, journal_partitions)


def person_subset(person_id: str, journal_partitions: int) -> Subset:
    """The subset of one person: their journal partition (everything of theirs is in it)."""
    if journal_partitions < 1:
        raise SubsetError("the journal has no partitions: nothing to read")
    key = person_id.encode("utf-8", "surrogateescape")
    return Subset(frozenset({partition_for_key(key, journal_partitions)}), journal_partitions)


def journal_partitions_of(header: dict[str, Any]) -> int:
    """How many partitions the journal had when the export was written (from its header)."""
    sub = header.get("partitions")
    if isinstance(sub, dict) and isinstance(sub.get("of"), int):
        return int(sub["of"])
    ends = header.get("ends")
    journal = ends.get(JOURNAL) if isinstance(ends, dict) else None
    return len(journal) if isinstance(journal, dict) else 0


def keep_subset(history: History, subset: Subset) -> History:
    """`history` cut down to `subset` (in place; returned). The journal is cut by partition, the
    outcomes and the persons table by person (`Subset.has_outcome`)."""
    history.journal = {p: v for p, v in history.journal.items() if p in subset.only}
    history.outcomes = [o for o in history.outcomes if subset.has_outcome(o)]
    if history.records is not None:
        history.records = {k: v for k, v in history.records.items() if subset.has_person(k)}
    history.unreadable = [u for u in history.unreadable if _unreadable_in(u[0], subset)]
    history.deleted = {p: b for p, b in history.deleted.items() if p in subset.only}
    history.header = {**history.header, "partitions": subset.as_dict()}
    return history


def _unreadable_in(where: str, subset: Subset) -> bool:
    """Unreadable journal records read from the topics ("journal P/O") by partition; the rest
    (an export's line numbers, table keys) are reported by every subset."""
    if where.startswith("journal ") and "/" in where:
        head = where[len("journal "):].split("/", 1)[0]
        if head.isdigit():
            return int(head) in subset.only
    return True


def now_jst() -> str:
    return dt.datetime.now(JST).isoformat(timespec="seconds")


# --- writing -------------------------------------------------------------------------------------


def header_line(
    *,
    rules_version: str,
    config_toml: str | None,
    app_id: str,
    source: str,
    ends: dict[str, dict[int, int]],
    tables: bool,
    exported_at: str | None = None,
    subset: Subset | None = None,
    deleted: dict[int, int] | None = None,
) -> bytes:
    extra: dict[str, Any] = {}
    if subset is not None:
        extra["partitions"] = subset.as_dict()
    if deleted:  # journal partitions whose start the broker no longer held: their log starts
        extra["starts"] = {JOURNAL: {str(p): b for p, b in sorted(deleted.items())}}
    return _json_encode({
        "record": "header",
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "exported_at": exported_at or now_jst(),
        "rules_version": rules_version,
        "config_toml": config_toml,
        "app_id": app_id,
        "source": source,
        "tables": [PERSONS_TABLE] if tables else [],
        "ends": {t: {str(p): e for p, e in sorted(parts.items())} for t, parts in ends.items()},
        **extra,
    }) + b"\n"


def stored_entry_json(raw: bytes) -> dict[str, Any]:
    """A stored journal entry as the export writes it: its own version's map, `value` as text.

    Raises VersionError when `raw` is not a msgpack map or its value is not UTF-8 text.
    """
    return _entry_json(stored_builtins(raw, "journal entry"))


def _entry_json(obj: Any) -> dict[str, Any]:
    """`stored_entry_json` of an entry already decoded to builtins (a batch holds its entries as
    maps); `obj` itself is left as it is."""
    if not isinstance(obj, dict):
        raise VersionError("journal entry: expected a map")
    value = obj.get("value")
    if isinstance(value, bytes):
        try:
            obj = {**obj, "value": value.decode("utf-8")}
        except UnicodeDecodeError:
            raise VersionError("journal entry: the event value is not UTF-8 text") from None
    for k, v in obj.items():
        if isinstance(v, bytes):
            raise VersionError(f"journal entry: unexpected binary field {k!r}")
    return obj


def journal_line(partition: int, offset: int, key: bytes | None, raw: bytes) -> bytes:
    """The line of a stored journal record of one entry (`journal_lines` takes any record)."""
    try:
        obj = stored_builtins(raw, "journal entry")
    except VersionError as exc:
        return _kept_line(partition, offset, key, raw, str(exc))
    return _entry_line(partition, offset, key, obj, raw)


def _entry_line(partition: int, offset: int, key: bytes | None, obj: Any,
                raw: bytes | None = None) -> bytes:
    """The line of one entry (`obj`, its stored builtins), or, when it is not an entry the line
    can hold as JSON, its bytes (`raw`; None: `obj` encoded alone, an entry of a batch)."""
    try:
        entry = _entry_json(obj)
    except VersionError as exc:
        kept = msgspec.msgpack.encode(obj) if raw is None else raw
        return _kept_line(partition, offset, key, kept, str(exc))
    return _json_encode({"record": "journal", "partition": partition, "offset": offset,
                         "key": _key_text(key), "entry": entry}) + b"\n"


def _kept_line(partition: int, offset: int, key: bytes | None, raw: bytes, error: str) -> bytes:
    # Kept, not dropped: a reader reports it as unreadable.
    return _json_encode({"record": "journal", "partition": partition, "offset": offset,
                         "key": _key_text(key), "raw_b64": base64.b64encode(raw).decode(),
                         "error": error}) + b"\n"


_NO_VALUE = "the record has no value"


def journal_lines(partition: int, offset: int, key: bytes | None,
                  raw: bytes | None) -> tuple[list[bytes], str | None]:
    """The lines of one stored journal record, and why it cannot be read (None when it can).

    One line per entry: a batch's entries (`schemas.journal.JournalBatch`) one after the other in
    its order, each with its person as the key and the record's offset, each map as it is stored
    in the batch (in its own version, as the entry of a one-entry record is written). A record
    that cannot be read is one line: an entry's map as stored when it is one (a newer reader may
    read it), else its bytes; a batch that cannot be read is kept whole as bytes, since the file
    has no line for a batch.
    """
    if raw is None:
        return [_kept_line(partition, offset, key, b"", _NO_VALUE)], _NO_VALUE
    if is_current_journal_entry(raw):  # the common case: one current entry, nothing to check
        return [journal_line(partition, offset, key, raw)], None
    try:
        obj = stored_builtins(raw, "journal record")
    except VersionError as exc:
        return [_kept_line(partition, offset, key, raw, str(exc))], str(exc)
    if not (isinstance(obj, dict) and obj.get("k") == "batch"):
        # One entry of an older (or unknown) version: written as stored; checked here so the
        # exporter hears of it, not only the reader.
        error: str | None = None
        try:
            decode_journal_entry(raw)
        except VersionError as exc:
            error = str(exc)
        return [_entry_line(partition, offset, key, obj, raw)], error
    try:
        # Every entry upgradable and one person each, or the batch is not written in pieces.
        journal_entries(key or b"", raw)
    except VersionError as exc:
        return [_kept_line(partition, offset, key, raw, str(exc))], str(exc)
    return [_entry_line(partition, offset, person, entry)
            for person, entry in zip(obj["persons"], obj["entries"], strict=True)], None


def outcome_line(topic: str, partition: int, offset: int, key: bytes | None, raw: bytes | None) -> bytes:
    head = {"record": "outcome", "topic": topic, "partition": partition, "offset": offset,
            "key": _key_text(key)}
    try:
        if raw is None:
            raise msgspec.DecodeError("no value")
        obj = _json_decode(raw)
        if not isinstance(obj, dict):
            raise msgspec.DecodeError("not a JSON object")
        head["outcome"] = obj
    except msgspec.DecodeError as exc:
        head["raw_b64"] = base64.b64encode(raw or b"").decode()
        head["error"] = f"not a JSON outcome: {exc}"
    return _json_encode(head) + b"\n"


def table_line(table: str, partition: int, offset: int, key: bytes, raw: bytes | None) -> bytes:
    return _json_encode({
        "record": "table", "table": table, "partition": partition, "offset": offset,
        "key": _key_text(key),
        "value_b64": None if raw is None else base64.b64encode(raw).decode(),
    }) + b"\n"


def end_line(journal: int, outcomes: int, table: int) -> bytes:
    return _json_encode({"record": "end", "journal": journal, "outcomes": outcomes,
                         "table": table}) + b"\n"


def _key_text(key: bytes | None) -> str | None:
    if key is None:
        return None
    return key.decode("utf-8", "surrogateescape")


# --- reading -------------------------------------------------------------------------------------


def decode_outcome(raw: bytes | None) -> tuple[dict[str, Any] | None, str | None]:
    if raw is None:
        return None, "the record has no value"
    try:
        obj = _json_decode(raw)
    except msgspec.DecodeError as exc:
        return None, f"not JSON: {exc}"
    if not isinstance(obj, dict):
        return None, "not a JSON object"
    return obj, None


def add_journal_raw(history: History, partition: int, offset: int, key: bytes | None,
                    raw: bytes | None) -> None:
    """Adds one stored journal record (msgpack) to `history`, upgraded to the current version."""
    add_journal_records(history, ((partition, offset, key, raw),))


def add_journal_records(history: History,
                        records: Iterable[tuple[int, int, bytes | None, bytes | None]]) -> None:
    """Adds stored journal records (partition, offset, key, raw msgpack) to `history`, each entry
    upgraded to the current version, a batch's entries one after the other with the record's
    offset and each its person's key; unreadable records are noted, not raised (replay's hot
    loop)."""
    journal = history.journal
    read = journal_entries
    one_current = is_current_journal_entry
    decode_current = JOURNAL_DECODER.decode
    current: list[tuple[int, str | None, JournalEntry]] = []
    current_partition = None
    for partition, offset, key, raw in records:
        if partition != current_partition:
            current = journal.setdefault(partition, [])
            current_partition = partition
        if raw is not None and one_current(raw):
            # Most records: one entry of the current version, one typed decode (as
            # `journal_entries` would do it, without building its list).
            try:
                current.append((offset, _key_text(key), decode_current(raw)))
                continue
            except DECODE_ERRORS:
                pass  # the general path says what is wrong
        try:
            if raw is None:
                raise VersionError(_NO_VALUE)
            # A record without a key (which no worker writes) keeps None as its entry's key:
            # `person_of` then takes the entry's own person.
            entries = read(cast(bytes, key), raw)
        except VersionError as exc:
            history.unreadable.append((f"journal {partition}/{offset}", str(exc)))
            continue
        for person, entry in entries:
            current.append((offset, _key_text(person), entry))


def note_deleted_starts(history: History, starts: dict[int, int]) -> None:
    """Records the journal partitions whose first `starts[p]` offsets the broker no longer held
    (retention, DeleteRecords; 0: none): in `History.deleted`, and as unreadable ("journal
    P/0-N"), which replay reports as differences, since no replay can reproduce what they
    held."""
    for partition, begin in sorted(starts.items()):
        if begin <= 0:
            continue
        history.deleted[partition] = begin
        history.unreadable.append((
            f"journal {partition}/0-{begin - 1}",
            f"the first {begin:,} offsets of journal partition {partition} were deleted "
            "(retention or DeleteRecords): its people's history cannot be replayed in full, and "
            "the journal must keep every record (retention.ms=-1: docs/RUNBOOK.md, \"Topic "
            "settings\")"))


def set_table_raw(history: History, where: str, key: bytes | str, raw: bytes | None) -> None:
    """The latest value of one `persons` key (None: deleted), upgraded to the current version."""
    records = history.records if history.records is not None else {}
    history.records = records
    k = key if isinstance(key, str) else _key_text(key)
    assert k is not None
    if raw is None:
        records.pop(k, None)
        return
    try:
        records[k] = decode_ledger_record(raw)
    except VersionError as exc:
        records.pop(k, None)
        history.unreadable.append((f"table persons {where} key {k}", str(exc)))


def iter_lines(stream: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    for n, line in enumerate(stream, start=1):
        line = line.rstrip(b"\r\n")
        if line:
            yield n, line


def read_export(stream: BinaryIO | Iterable[bytes], name: str = "<export>") -> History:
    """Reads an export file into a History (raises ExportError when it is not one)."""
    with no_cyclic_gc():
        return _read_export(stream, name)


def _read_export(stream: BinaryIO | Iterable[bytes], name: str) -> History:
    history = History(source=name)
    # A file and a list of its lines read alike: lines with nothing but whitespace are skipped.
    lines = ((n, ln.rstrip(b"\r\n")) for n, ln in enumerate(stream, start=1) if ln.strip())
    counts = {"journal": 0, "outcome": 0, "table": 0}
    ended = None
    for n, line in lines:
        try:
            obj = _json_decode(line)
        except msgspec.DecodeError as exc:
            raise ExportError(f"{name} line {n}: not JSON ({exc})") from None
        kind = obj.get("record") if isinstance(obj, dict) else None
        if n == 1 or not history.header:
            if kind != "header" or obj.get("format") != FORMAT:
                raise ExportError(f"{name} line {n}: not a {FORMAT} file (no header line)")
            if obj.get("format_version") != FORMAT_VERSION:
                raise ExportError(
                    f"{name}: export format version {obj.get('format_version')} is not "
                    f"{FORMAT_VERSION}; use the mynapoint version that wrote it"
                )
            history.header = obj
            if PERSONS_TABLE in (obj.get("tables") or ()):
                history.records = {}
            starts = (obj.get("starts") or {}).get(JOURNAL) or {}
            note_deleted_starts(history, {int(p): int(b) for p, b in starts.items()})
            continue
        if ended is not None:
            raise ExportError(f"{name} line {n}: text after the end line")
        where = f"{name} line {n}"
        if kind not in ("journal", "outcome", "table", "end"):
            raise ExportError(f"{where}: unknown record {kind!r}")
        try:
            if kind == "journal":
                counts["journal"] += 1
                _read_journal_line(history, obj, where)
            elif kind == "outcome":
                counts["outcome"] += 1
                _read_outcome_line(history, obj, where)
            elif kind == "table":
                counts["table"] += 1
                if obj.get("table") == PERSONS_TABLE:
                    raw = obj.get("value_b64")
                    set_table_raw(history, where, str(obj.get("key")),
                                  None if raw is None else base64.b64decode(raw, validate=True))
            else:
                ended = obj
        except (KeyError, ValueError, TypeError) as exc:
            # What `export` writes always reads: this line was changed or cut since.
            raise ExportError(
                f"{where}: this {kind} record cannot be read ({type(exc).__name__}: {exc}); "
                "was the file changed after `mynapoint export` wrote it? Export it again, or "
                "ask for the file as it was written") from None
    if not history.header:
        raise ExportError(f"{name}: empty file, not a {FORMAT} file")
    if ended is None:
        raise ExportError(f"{name}: no end line: the file is truncated")
    expected = {"journal": ended.get("journal"), "outcome": ended.get("outcomes"),
                "table": ended.get("table")}
    if expected != counts:
        raise ExportError(f"{name}: the end line counts {expected}, the file holds {counts}")
    return history


def _read_journal_line(history: History, obj: dict[str, Any], where: str) -> None:
    partition, offset = int(obj["partition"]), int(obj["offset"])
    entry = obj.get("entry")
    if entry is None:
        history.unreadable.append((where, str(obj.get("error") or "no entry")))
        return
    try:
        if not isinstance(entry, dict):
            raise VersionError("journal entry: expected a map")
        value = entry.get("value")
        if isinstance(value, str):
            entry["value"] = value.encode("utf-8")
        parsed = journal_entry_from_builtins(entry)
    except VersionError as exc:
        history.unreadable.append((where, str(exc)))
        return
    history.journal.setdefault(partition, []).append((offset, obj.get("key"), parsed))


def _read_outcome_line(history: History, obj: dict[str, Any], where: str) -> None:
    outcome = obj.get("outcome")
    history.outcomes.append(Published(
        topic=str(obj.get("topic")), partition=int(obj.get("partition", -1)),
        offset=int(obj.get("offset", -1)),
        outcome=outcome if isinstance(outcome, dict) else None,
        error=None if isinstance(outcome, dict) else str(obj.get("error") or "no outcome"),
    ))


def sort_journal(history: History) -> None:
    for entries in history.journal.values():
        entries.sort(key=lambda e: e[0])
