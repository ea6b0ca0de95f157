"""Stored-data versions: every stored value is upgraded on read, step by step, and never rewritten.

Three kinds of stored value carry a version, and each has a chain of upcasters here:

| kind | stored where | current | version is |
|---|---|---|---|
| `journal_entry` (EventEntry, AnswerEntry) | `mynapoint.journal`, a waiting/queued request inside a ledger record | `schemas.journal.JOURNAL_VERSION` | the `v` key of the msgpack map (absent: 0) |
| `ledger_record` (LedgerRecord) | the `persons` table and its changelog | `streams.core.ledger.LEDGER_VERSION` | the first element of the msgpack array; a map is older (its `v`, absent: 0) |
| `person_state` (PersonState) | inside a ledger record | `streams.core.state.STATE_VERSION` | likewise |

Reading a stored value: decode the raw msgpack (or the export's JSON) to builtins, upcast
v(n) -> v(n+1) until the current version with the registered functions, then convert to the
current Struct. A version newer than this code knows, or one with no upcaster, is a
`VersionError`: an old reader never guesses at a newer layout. Current-version journal entries
take a fast path (one typed decode, as the ledger does) because replay reads millions of them.

## The historic version 0 (documented here, produced by no deployed code)

Version 1 is the first released layout. Version 0 is the pre-release layout, kept as the worked
example of the upgrade path and exercised by `tests/core/test_versions.py`:

- **journal entry v0**: a msgpack map with no `v` key. An event entry named its source in one
  string, `{"k": "event", "source": "<topic>/<partition>/<offset>", "value": <bytes>, "late":
  <bool, optional>}`, where v1 has the three fields `topic`, `partition`, `offset`. An answer entry
  had the same fields as in v1, without `v`.
- **person state v0**: a msgpack map (v1 is an array) with no `v` key; the card was a map whose
  `applied_on` was a date (v1: `applied_day`, a JST day number) and whose instants were
  `certificate_expires_at` and `renewed_at`; `links` was a map campaign -> [service_id,
  service_account, linked_at], in the order the links were accepted (v1: a list of
  [campaign, service_id, service_account, linked_at, day], `day` being the JST day of
  `linked_at`); the other fields had their v1 names and meanings; `pending` did not exist.
- **ledger record v0**: a msgpack map `{"person", "offsets", "waiting", "queue", "recent"}` with no
  `v` (v1 is an array in that order after `v`); `waiting` was a map with the v1 names.

## Person state v1 (released; read, never written since v2)

- **person state v1**: each payment in `txns` was `[campaign, service_account, amount, refunded,
  counted]`; v2 has `[link, amount, refunded, counted]`, `link` being the index in `links` of the
  link the payment was recorded under (its campaign and account; links are only ever appended).
  The upcaster finds that link by campaign, service id (the key's first part) and account. v1's
  last field, `pending`, was always empty (requests waiting for a claim live in the ledger
  record): v2 has no such field.

## Ledger record v1 (released; read, never written since v2)

- **ledger record v1**: `[1, person, offsets, waiting, queue, recent]` where each `recent` item was
  `[entry id, outcomes as JSON lines]` and the memory always held the last 32 entries with
  outcomes. v2 (`[2, person, offsets, waiting, queue, recent, packed_for]`) packs each item's
  outcomes (`streams.core.ledger.pack`: msgpack rows, the person id and rules version once per
  record in `packed_for`) and adds a third element to each item, the entry's offset in its journal
  partition, so that entries below the committed offset can be forgotten. The upcaster packs the
  JSON lines (the same outcomes, field for field) for the person and rules version of the first
  one; a v1 item did not record its offset and upgrades with `UNKNOWN_AT` (-1), which is never
  taken as committed: it is forgotten only once a later entry of the person is.

A person state and the journal entries inside a ledger record keep their own versions: a v1
record may hold a v0 person or a v0 waiting entry, and each is upgraded by its own chain.

## Adding a version

Bump the constant next to the Struct, add `@upcaster(kind, old)` taking the old builtins and
returning the next version's builtins (with the new version number in it), add a row to the tests
that replays a history mixing the versions, and describe the old layout in docs/AUDIT.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import msgspec

from schemas.codec import DECODE_ERRORS, OUTCOME_DECODER
from schemas.journal import (
    JOURNAL_BATCH_VERSION,
    JOURNAL_DECODER,
    JOURNAL_ENCODER,
    JOURNAL_RECORD_DECODER,
    JOURNAL_VERSION,
    AnswerEntry,
    EventEntry,
    JournalBatch,
    JournalEntry,
)
from streams.core.ledger import (
    LEDGER_VERSION,
    RECORD_DECODER,
    UNKNOWN_AT,
    LedgerRecord,
    pack,
    remembered_lines,
)
from streams.core.state import STATE_VERSION, PersonState
from streams.core.timeutil import day_number, jst_day

JOURNAL_ENTRY = "journal_entry"
LEDGER_RECORD = "ledger_record"
PERSON_STATE = "person_state"

CURRENT: dict[str, int] = {
    JOURNAL_ENTRY: JOURNAL_VERSION,
    LEDGER_RECORD: LEDGER_VERSION,
    PERSON_STATE: STATE_VERSION,
}

Upcaster = Callable[[Any], Any]
_UPCASTERS: dict[tuple[str, int], Upcaster] = {}

_DECODE_ERRORS = DECODE_ERRORS


class VersionError(ValueError):
    """A stored value that cannot be read: unknown or future version, or a broken layout."""


def upcaster(kind: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Registers the function that turns `kind` builtins of `from_version` into the next version."""
    if kind not in CURRENT:
        raise ValueError(f"unknown stored kind {kind!r}")

    def register(fn: Upcaster) -> Upcaster:
        key = (kind, from_version)
        if key in _UPCASTERS:
            raise ValueError(f"two upcasters for {kind} v{from_version}")
        _UPCASTERS[key] = fn
        return fn

    return register


def registered() -> dict[str, list[int]]:
    """The versions each kind can be upgraded from (for docs and tests)."""
    out: dict[str, list[int]] = {k: [] for k in CURRENT}
    for kind, v in sorted(_UPCASTERS):
        out[kind].append(v)
    return out


def version_of(kind: str, obj: Any) -> int:
    """The version of stored builtins: array layouts start with it, map layouts carry `v`."""
    if isinstance(obj, list | tuple):
        if obj and type(obj[0]) is int:
            return obj[0]
        raise VersionError(f"{kind}: an array that does not start with its version")
    if isinstance(obj, dict):
        v = obj.get("v", 0)
        if type(v) is not int:
            raise VersionError(f"{kind}: version {v!r} is not an integer")
        return v
    raise VersionError(f"{kind}: expected a map or an array, got {type(obj).__name__}")


def upcast(kind: str, obj: Any) -> Any:
    """`obj` (builtins of any known version of `kind`) upgraded to the current version."""
    current = CURRENT[kind]
    v = version_of(kind, obj)
    if v > current:
        raise VersionError(
            f"{kind} version {v} is newer than this code reads ({current}): upgrade mynapoint"
        )
    while v < current:
        step = _UPCASTERS.get((kind, v))
        if step is None:
            raise VersionError(f"{kind} version {v} has no upcaster")
        obj = step(obj)
        nv = version_of(kind, obj)
        if nv != v + 1:
            raise VersionError(f"the {kind} upcaster from v{v} produced v{nv}")
        v = nv
    return obj


# --- journal entries ---------------------------------------------------------------------------

# How msgspec writes a current entry: a map whose first keys are the tag "k" and then "v" (fields
# in definition order). Bytes 1.. of an encoded v1 entry therefore start with these; anything else
# takes the general path, which reads every version correctly (this only decides the speed).
_V1_EVENT_PREFIX = b"\xa1k\xa5event\xa1v" + msgspec.msgpack.encode(JOURNAL_VERSION)
_V1_ANSWER_PREFIX = b"\xa1k\xa6answer\xa1v" + msgspec.msgpack.encode(JOURNAL_VERSION)


_EVENT_END = 1 + len(_V1_EVENT_PREFIX)
_ANSWER_END = 1 + len(_V1_ANSWER_PREFIX)


def is_current_journal_entry(raw: bytes) -> bool:
    return raw[1:_EVENT_END] == _V1_EVENT_PREFIX or raw[1:_ANSWER_END] == _V1_ANSWER_PREFIX


def stored_builtins(raw: bytes, what: str) -> Any:
    """A stored msgpack value as builtins, for the upcasters; VersionError when it is not msgpack."""
    try:
        return msgspec.msgpack.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise VersionError(f"{what} is not msgpack: {exc}") from None


def decode_journal_entry(raw: bytes, _decode=JOURNAL_DECODER.decode) -> JournalEntry:
    """A stored journal entry (msgpack) of any known version, as the current Struct."""
    if is_current_journal_entry(raw):
        try:
            return _decode(raw)
        except _DECODE_ERRORS:
            pass  # the general path says what is wrong
    return journal_entry_from_builtins(stored_builtins(raw, "journal entry"))


# A batch record (`schemas.journal.JournalBatch`): a map tagged "batch" (its first key), and
# the prefix of a current one, as for the entries above.
_BATCH_TAG = b"\xa1k\xa5batch"
_BATCH_TAG_END = 1 + len(_BATCH_TAG)
_V1_BATCH_PREFIX = _BATCH_TAG + b"\xa1v" + msgspec.msgpack.encode(JOURNAL_BATCH_VERSION)
_BATCH_END = 1 + len(_V1_BATCH_PREFIX)


def is_journal_batch(raw: bytes) -> bool:
    """Whether a stored journal record is a batch (of any version), not one entry."""
    return raw[1:_BATCH_TAG_END] == _BATCH_TAG


def journal_entries(key: bytes, raw: bytes,
                    _decode=JOURNAL_RECORD_DECODER.decode) -> list[tuple[bytes, JournalEntry]]:
    """The entries of a stored journal record with its `key`, each with its person's key, in
    their order: a batch's (`schemas.journal.JournalBatch`), or the record's one entry (a record
    of any layout before batches: a batch of one), each as the current Struct. VersionError when
    it cannot be read."""
    if not is_journal_batch(raw):
        return [(key, decode_journal_entry(raw))]
    if raw[1:_BATCH_END] == _V1_BATCH_PREFIX:
        try:
            batch = _decode(raw)
        except _DECODE_ERRORS:
            batch = None  # the general path says what is wrong
        if (type(batch) is JournalBatch and len(batch.persons) == len(batch.entries)
                and all(e.v == JOURNAL_VERSION for e in batch.entries)):
            return list(zip(batch.persons, batch.entries, strict=True))
    return _batch_from_builtins(stored_builtins(raw, "journal record"))


def _batch_from_builtins(obj: Any) -> list[tuple[bytes, JournalEntry]]:
    """A batch whose entries are not all current: each upgraded by its own chain."""
    if not isinstance(obj, dict) or obj.get("k") != "batch":
        raise VersionError("journal batch: expected a map tagged batch")
    v = obj.get("v")
    if v != JOURNAL_BATCH_VERSION:
        raise VersionError(f"journal batch version {v!r} is not one this code reads "
                           f"({JOURNAL_BATCH_VERSION}): upgrade mynapoint")
    persons, entries = obj.get("persons"), obj.get("entries")
    if (not isinstance(persons, list) or not isinstance(entries, list)
            or len(persons) != len(entries) or not all(type(p) is bytes for p in persons)):
        raise VersionError("journal batch: expected one person (bytes) per entry")
    return [(p, journal_entry_from_builtins(e)) for p, e in zip(persons, entries, strict=True)]


def journal_entry_from_builtins(obj: Any) -> JournalEntry:
    """Builtins of a journal entry of any known version (`value` as bytes) -> current Struct."""
    if not isinstance(obj, dict):
        raise VersionError("journal entry: expected a map")
    current = upcast(JOURNAL_ENTRY, obj)
    try:
        return msgspec.convert(current, JournalEntry)  # type: ignore[arg-type]
    except msgspec.ValidationError as exc:
        raise VersionError(f"journal entry (v{version_of(JOURNAL_ENTRY, obj)}): {exc}") from None


def _current_entry_bytes(raw: bytes) -> bytes:
    """Encoded entry bytes as the current version (unchanged when already current)."""
    if is_current_journal_entry(raw):
        return raw
    return JOURNAL_ENCODER.encode(decode_journal_entry(raw))


@upcaster(JOURNAL_ENTRY, 0)
def _journal_entry_v0(obj: dict[str, Any]) -> dict[str, Any]:
    out = {k: val for k, val in obj.items() if k != "source"}
    out["v"] = 1
    if obj.get("k") == "event":
        source = obj.get("source")
        if not isinstance(source, str) or source.count("/") < 2:
            raise VersionError(f"journal entry v0: bad source {source!r}")
        topic, partition, offset = source.rsplit("/", 2)
        try:
            out["partition"], out["offset"] = int(partition), int(offset)
        except ValueError:
            raise VersionError(f"journal entry v0: bad source {source!r}") from None
        out["topic"] = topic
    return out


# --- person state ------------------------------------------------------------------------------

_STATE_FIELDS_V1 = ("v", "card", "mykey_id", "event_ids", "preregistered", "insurance_registered",
                    "account_registered", "links", "spend", "points", "txns", "pending")
# v2 dropped `pending` (always empty: claims wait in the ledger record, never in the state).
_STATE_FIELDS_V2 = _STATE_FIELDS_V1[:-1]


@upcaster(PERSON_STATE, 0)
def _person_state_v0(obj: dict[str, Any]) -> list[Any]:
    card = obj.get("card")
    if card is not None:
        applied = card["applied_on"]
        applied_date = applied if isinstance(applied, dt.date) else dt.date.fromisoformat(applied)
        card = [
            day_number(applied_date),
            card["birth_date"],
            card["certificate_serial"],
            card["certificate_expires_at"],
            card.get("renewed_at"),
            card.get("suspended", False),
        ]
    links = [
        [campaign, service_id, account, linked_at, jst_day(linked_at)]
        for campaign, (service_id, account, linked_at) in (obj.get("links") or {}).items()
    ]
    values = {
        "v": 1,
        "card": card,
        "mykey_id": obj.get("mykey_id"),
        "event_ids": list(obj.get("event_ids") or ()),
        "preregistered": list(obj.get("preregistered") or ()),
        "insurance_registered": obj.get("insurance_registered", False),
        "account_registered": obj.get("account_registered", False),
        "links": links,
        "spend": dict(obj.get("spend") or {}),
        "points": dict(obj.get("points") or {}),
        "txns": dict(obj.get("txns") or {}),
        "pending": None,
    }
    return [values[name] for name in _STATE_FIELDS_V1]


@upcaster(PERSON_STATE, 1)
def _person_state_v1(obj: list[Any]) -> list[Any]:
    if len(obj) != len(_STATE_FIELDS_V1):
        raise VersionError(f"person state v1: {len(obj)} fields, not {len(_STATE_FIELDS_V1)}")
    values = dict(zip(_STATE_FIELDS_V1, obj, strict=True))
    links = values["links"] or []
    txns = {}
    try:
        for key, (campaign, account, amount, refunded, counted) in (values["txns"] or {}).items():
            service_id = key.split("\x00", 1)[0]
            index = next((i for i, lk in enumerate(links)
                          if lk[0] == campaign and lk[1] == service_id and lk[2] == account), None)
            if index is None:
                raise VersionError(f"person state v1: payment {key!r} matches none of the links")
            txns[key] = [index, amount, refunded, counted]
    except (TypeError, ValueError, IndexError, AttributeError) as exc:
        raise VersionError(f"person state v1: bad payment ({exc})") from None
    if values["pending"] is not None:
        raise VersionError("person state v1: a pending request, which no version ever wrote")
    values["v"] = 2
    values["txns"] = txns
    return [values[name] for name in _STATE_FIELDS_V2]


def person_state_from_builtins(obj: Any) -> PersonState:
    current = upcast(PERSON_STATE, obj)
    try:
        return msgspec.convert(current, PersonState)
    except msgspec.ValidationError as exc:
        raise VersionError(f"person state (v{version_of(PERSON_STATE, obj)}): {exc}") from None


def decode_person_state(raw: bytes) -> PersonState:
    return person_state_from_builtins(stored_builtins(raw, "person state"))


# --- ledger records ----------------------------------------------------------------------------

_RECORD_FIELDS = tuple(LedgerRecord.__struct_fields__)
_RECORD_FIELDS_V1 = ("v", "person", "offsets", "waiting", "queue", "recent")


@upcaster(LEDGER_RECORD, 0)
def _ledger_record_v0(obj: dict[str, Any]) -> list[Any]:
    waiting = obj.get("waiting")
    if waiting is not None:
        waiting = [waiting["claim_kind"], waiting["claim_key"], waiting["event_id"],
                   waiting["source_id"], waiting["entry"]]
    values = {
        "v": 1,
        "person": obj.get("person"),
        "offsets": dict(obj.get("offsets") or {}),
        "waiting": waiting,
        "queue": list(obj.get("queue") or ()),
        "recent": [list(r) for r in obj.get("recent") or ()],
    }
    return [values[name] for name in _RECORD_FIELDS_V1]


@upcaster(LEDGER_RECORD, 1)
def _ledger_record_v1(obj: list[Any]) -> list[Any]:
    if len(obj) != 6:
        raise VersionError(f"ledger record v1: {len(obj)} fields, not 6")
    try:
        remembered = [(r[0], list(OUTCOME_DECODER.decode_lines(r[1]))) for r in obj[5] or ()]
    except (*_DECODE_ERRORS, TypeError, IndexError, KeyError) as exc:
        raise VersionError(f"ledger record v1: bad recent item ({exc})") from None
    first = next((outs[0] for _, outs in remembered if outs), None)
    packed_for = ["", ""] if first is None else [
        first.person_id, getattr(first, "rules_version", "")]  # type: ignore[union-attr]
    items = [[entry_id, pack(outs, *packed_for), UNKNOWN_AT] for entry_id, outs in remembered]
    return [2, *obj[1:5], items, packed_for]


def ledger_record_from_builtins(obj: Any) -> LedgerRecord:
    """Builtins of a ledger record of any known version -> the current Struct.

    The person state inside it and the journal entries it holds (a request waiting for a claim,
    the queue behind it) are upgraded by their own chains.
    """
    current = list(upcast(LEDGER_RECORD, obj))
    idx = {name: i for i, name in enumerate(_RECORD_FIELDS)}
    person = current[idx["person"]]
    waiting = current[idx["waiting"]]
    queue = current[idx["queue"]]
    try:
        if waiting is not None:
            waiting = list(waiting)
            waiting[4] = _current_entry_bytes(waiting[4])
            current[idx["waiting"]] = waiting
        if queue:
            current[idx["queue"]] = [_current_entry_bytes(e) for e in queue]
        current[idx["person"]] = None
        record = msgspec.convert(current, LedgerRecord)
    except (*_DECODE_ERRORS, TypeError, IndexError) as exc:
        raise VersionError(f"ledger record (v{version_of(LEDGER_RECORD, obj)}): {exc}") from None
    if person is not None:
        record = msgspec.structs.replace(record, person=person_state_from_builtins(person))
    return record


# An encoded current record is an array of its fields starting with its version.
_CURRENT_RECORD_PREFIX = bytes([0x90 + len(_RECORD_FIELDS)]) + msgspec.msgpack.encode(LEDGER_VERSION)


def _current_record(raw: bytes) -> LedgerRecord | None:
    """The fast path: a current record holding a current person and current entries, or None."""
    if raw[:len(_CURRENT_RECORD_PREFIX)] != _CURRENT_RECORD_PREFIX:
        return None
    try:
        record = RECORD_DECODER.decode(raw)
    except _DECODE_ERRORS:
        return None
    if record.v != LEDGER_VERSION or (record.person is not None and
                                      record.person.v != STATE_VERSION):
        return None
    w = record.waiting
    if w is not None and not is_current_journal_entry(w.entry):
        return None
    if any(not is_current_journal_entry(e) for e in record.queue):
        return None
    return record


def decode_ledger_record(raw: bytes) -> LedgerRecord:
    """A stored `persons` table value (msgpack) of any known version, as the current Struct."""
    fast = _current_record(raw)
    if fast is not None:
        return fast
    return ledger_record_from_builtins(stored_builtins(raw, "ledger record"))


# --- what older writers wrote (for tests and the docs' examples) --------------------------------


def event_entry_v0(entry: EventEntry) -> bytes:
    """`entry` in the historic v0 layout, msgpack-encoded (what a v0 writer stored)."""
    obj: dict[str, Any] = {"k": "event", "source": entry.source_id, "value": entry.value}
    if entry.late:
        obj["late"] = True
    return msgspec.msgpack.encode(obj)


def answer_entry_v0(entry: AnswerEntry) -> bytes:
    obj = msgspec.to_builtins(entry)
    del obj["v"]
    return msgspec.msgpack.encode(obj)


def person_state_v0(state: PersonState) -> dict[str, Any]:
    """`state` in the historic v0 layout, as builtins (a v0 writer stored this as msgpack)."""
    card = None
    if state.card is not None:
        c = state.card
        card = {
            "applied_on": (dt.date(1970, 1, 1) + dt.timedelta(days=c.applied_day)).isoformat(),
            "birth_date": c.birth_date.isoformat(),
            "certificate_serial": c.certificate_serial,
            "certificate_expires_at": c.certificate_expires,
            "renewed_at": c.renewed_at,
            "suspended": c.suspended,
        }
    return {
        "card": card,
        "mykey_id": state.mykey_id,
        "event_ids": sorted(state.event_ids),
        "preregistered": sorted(state.preregistered),
        "insurance_registered": state.insurance_registered,
        "account_registered": state.account_registered,
        "links": {lk.campaign: [lk.service_id, lk.service_account, lk.linked_at]
                  for lk in state.links},
        "spend": dict(state.spend),
        "points": dict(state.points),
        "txns": _txns_v1(state),
    }


def _txns_v1(state: PersonState) -> dict[str, list[Any]]:
    links = state.links
    return {key: [links[t.link].campaign, links[t.link].service_account, t.amount, t.refunded,
                  t.counted] for key, t in state.txns.items()}


def person_state_v1(state: PersonState) -> list[Any]:
    """`state` in the v1 layout, as builtins (a v1 writer stored this as msgpack)."""
    obj = msgspec.to_builtins(state)
    values = dict(zip(_STATE_FIELDS_V2, obj, strict=True))
    values["v"] = 1
    values["txns"] = _txns_v1(state)
    values["pending"] = None
    return [values[name] for name in _STATE_FIELDS_V1]


def ledger_record_v0(record: LedgerRecord, *, person_v0: bool = True) -> bytes:
    """`record` in the historic v0 layout (its person too, unless `person_v0` is false)."""
    person: Any = None
    if record.person is not None:
        person = (person_state_v0(record.person) if person_v0
                  else msgspec.to_builtins(record.person))
    w = record.waiting
    obj = {
        "person": person,
        "offsets": dict(record.offsets),
        "waiting": None if w is None else {
            "claim_kind": w.claim_kind, "claim_key": w.claim_key, "event_id": w.event_id,
            "source_id": w.source_id, "entry": w.entry,
        },
        "queue": list(record.queue),
        "recent": [[r[0], r[1]] for r in remembered_lines(record) if r[0]],
    }
    return msgspec.msgpack.encode(obj)


def ledger_record_v1(record: LedgerRecord) -> bytes:
    """`record` in the v1 layout, msgpack-encoded: what a v1 writer stored for the same state
    (a v1 person; `recent` items as JSON lines without their journal offset; v1 had no anchor)."""
    person = None if record.person is None else person_state_v1(record.person)
    return msgspec.msgpack.encode([
        1, person, dict(record.offsets), record.waiting, list(record.queue),
        [[r[0], r[1]] for r in remembered_lines(record) if r[0]],
    ])
