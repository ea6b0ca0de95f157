"""The ledger agent: fold each journal entry into the person's record (streams/core/ledger.py)
over the `persons` table, keep the `timeline` table, ask claims, publish outcomes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from agents import metrics
from agents.faust_private import committed_offset
from agents.outputs import Outputs
from agents.tables import getter
from schemas import topics
from schemas.codec import (
    DECODE_ERRORS,
    INTERNAL_ERROR,
    UNREADABLE_JOURNAL_ENTRY,
    UNREADABLE_STATE,
    BadInput,
    mask_my_numbers,
)
from schemas.journal import JOURNAL_ENCODER
from streams.core.config import RulesConfig
from streams.core.ledger import (
    RECORD_ENCODER,
    UNKNOWN_AT,
    Folded,
    LedgerRecord,
    fold,
    remembered_lines,
)
from streams.core.timeline import writes_after_fold as timeline_writes
from streams.core.versions import VersionError, decode_journal_entry, decode_ledger_record

_UNREADABLE = (VersionError, *DECODE_ERRORS)


def _fields(key: bytes) -> dict[str, str]:
    """What a dead letter of the person's entry says of them: the person id, masked."""
    return {"person_id": mask_my_numbers(key.decode("utf-8", "replace"))}


def fold_stored(key: bytes | None, entry_value: bytes | None,
                read: Callable[[bytes], bytes | None],
                rules: RulesConfig, at: int = UNKNOWN_AT,
                committed: int = 0) -> tuple[LedgerRecord | None, Folded]:
    """The person's stored record (`read(key)`) and the fold of one journal record into it.

    `at` is the journal record's offset and `committed` its partition's committed offset: the
    record then forgets the outcomes of entries below it (see `streams.core.ledger.fold`).

    Both are read through `streams.core.versions`, so values stored by an earlier version are
    upgraded on read. What cannot be read or decided raises `BadInput` with the reason to
    dead-letter it under: no journal record stops the ledger.
    """
    try:
        if entry_value is None:
            raise VersionError("the record has no value")
        entry = decode_journal_entry(entry_value)
        if not key:
            raise VersionError("the record has no key (the person_id)")
    except _UNREADABLE as exc:
        raise BadInput(
            UNREADABLE_JOURNAL_ENTRY,
            f"not a journal entry this worker can read ({exc}); only mynapoint workers may write "
            f"to {topics.JOURNAL}: find the other producer, or upgrade this worker if a newer "
            "one wrote it",
        ) from None
    record_value = read(key)
    try:
        record = decode_ledger_record(record_value) if record_value is not None else None
    except _UNREADABLE as exc:
        raise BadInput(
            UNREADABLE_STATE,
            f"the person's stored record cannot be read ({exc}); if a newer worker wrote it, run "
            "that version; the person's journal entries are dead-lettered until then",
            _fields(key),
        ) from None
    try:
        return record, fold(record, entry, rules, at=at, committed=committed)
    except Exception as exc:
        # A bug in the rules or the fold: reported with the record it failed on, which can be
        # replayed from its offset once fixed, instead of stopping every other person.
        raise BadInput(
            INTERNAL_ERROR,
            f"deciding this journal entry failed ({type(exc).__name__}: {exc}); this is a bug: "
            "report it with this dead letter; the entry was not applied",
            _fields(key),
        ) from exc


def register(app: Any, journal: Any, persons: Any, timeline: Any, out: Outputs,
             rules: RulesConfig) -> None:
    """Adds the ledger agent to `app`."""
    read_person = getter(persons)
    read_timeline = getter(timeline)

    @app.agent(journal, name="ledger")
    async def ledger(stream: Any) -> None:
        async for event in stream.events():
            started = time.perf_counter()
            key: bytes = event.key
            msg = event.message
            # Everything below the committed offset was sent (the producer is flushed before commits).
            committed = committed_offset(app, msg.tp) or 0
            try:
                record, folded = fold_stored(key, event.value, read_person, rules,
                                             at=msg.offset, committed=committed)
            except BadInput as exc:
                # The raw value only when it is the record that cannot be read.
                await out.refuse(exc, msg, event.value if exc.reason == UNREADABLE_JOURNAL_ENTRY
                                 else None)
                continue
            if folded.record is not record:
                persons[key] = RECORD_ENCODER.encode(folded.record)
            if folded.outcomes:
                for tkey, tvalue in timeline_writes(key, read_timeline(key),
                                                    remembered_lines(folded.record)):
                    timeline[tkey] = tvalue
            for req in folded.claims:
                await out.send(topics.CLAIMS, req.key.encode(), JOURNAL_ENCODER.encode(req))
            await out.publish(key, folded.outcomes)
            if folded.repeat:
                metrics.REPEATS.inc()
            metrics.observe_latency(started, getattr(msg, "timestamp", None))
