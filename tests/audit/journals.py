"""Journal records of several entries (`schemas.journal.JournalBatch`) for the audit tests: a
recorded journal of one entry a record, regrouped as intake journals it now."""

from __future__ import annotations

from schemas.journal import JOURNAL_DECODER, JOURNAL_ENCODER, JournalBatch, JournalEntry
from streams.audit.replay import Recorded


def batch(*items: tuple[bytes, JournalEntry]) -> bytes:
    """A journal record holding `items` (person key, entry), in their order."""
    return JOURNAL_ENCODER.encode(JournalBatch(persons=[p for p, _ in items],
                                               entries=[e for _, e in items]))


def batched(rec: Recorded, most: int) -> Recorded:
    """`rec` with its journal regrouped: per partition, each run of consecutive records of
    different persons (at most `most`) in one record, keyed by its first person, at offsets
    counted again from 0; a run of one stays the record it was, byte for byte. The entries, their
    order per partition and so every person's order are those of `rec`."""
    runs: dict[int, list[list[tuple[bytes, bytes]]]] = {}
    for p, _o, key, raw in rec.journal:
        part = runs.setdefault(p, [[]])
        run = part[-1]
        if len(run) == most or any(k == key for k, _ in run):
            part.append(run := [])
        run.append((key, raw))
    journal: list[tuple[int, int, bytes, bytes]] = []
    for p in sorted(runs):
        for offset, run in enumerate(r for r in runs[p] if r):
            value = run[0][1] if len(run) == 1 else batch(
                *((k, JOURNAL_DECODER.decode(raw)) for k, raw in run))
            journal.append((p, offset, run[0][0], value))
    return Recorded(journal, list(rec.outputs), dict(rec.table))
