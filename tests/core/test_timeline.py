"""The chunked `timeline` table layout (streams/core/timeline.py): appends rewrite a bounded amount, the
history reads back whole and in order, and timeline writes lost in a crash come back."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.ledger import RECENT
from streams.core.timeline import (
    CHUNK_LINES,
    Head,
    chunk_key,
    history,
    load_head,
    missing,
    writes_after_fold,
)

KEY = b"P0000001"


def entry(i: int, lines: int = 1) -> tuple[str, bytes]:
    """A ledger `recent` item: entry id and its outcomes as JSON lines (ids make them unique)."""
    body = b"".join(b'{"outcome_id":"o%d-%d"}\n' % (i, k) for k in range(lines))
    return (f"e{i}", body)


def fold_all(entries, chunk_lines: int, table=None, lose=frozenset()):
    """Folds entries one by one as the ledger agent does; folds in `lose` have their writes lost."""
    table = {} if table is None else table
    recent: tuple[tuple[str, bytes], ...] = ()
    sizes = []
    for i, e in enumerate(entries):
        recent = (recent + (e,))[-RECENT:]
        writes = writes_after_fold(KEY, table.get(KEY), recent, chunk_lines)
        sizes.extend(len(v) for _, v in writes)
        if i not in lose:
            table.update(writes)
    return table, recent, sizes


@settings(max_examples=200)
@given(st.lists(st.integers(1, 4), max_size=60), st.integers(1, 6))
def test_history_is_every_line_in_order(line_counts, chunk_lines):
    entries = [entry(i, n) for i, n in enumerate(line_counts)]
    table, _, _ = fold_all(entries, chunk_lines)
    expected = b"".join(lines for _, lines in entries) if entries else None
    assert history(KEY, table.get(KEY), table.get) == expected


def test_an_append_rewrites_a_bounded_amount():
    # One value per person made the 1,000th append rewrite 1,000 lines; a chunk caps it.
    entries = [entry(i) for i in range(1000)]
    _, _, sizes = fold_all(entries, CHUNK_LINES)
    one_line = len(entry(999)[1])
    assert max(sizes) <= (CHUNK_LINES + 2) * one_line + 16
    table, _, _ = fold_all(entries, CHUNK_LINES)
    # Sealed once full: chunks of CHUNK_LINES one-line entries, the rest still open.
    assert load_head(table[KEY]).sealed == (1000 - 1) // CHUNK_LINES
    assert chunk_key(KEY, 0) in table


@settings(max_examples=200)
@given(st.lists(st.integers(1, 3), min_size=2, max_size=40), st.data(), st.integers(1, 5))
def test_lost_writes_come_back_with_the_next_fold(line_counts, data, chunk_lines):
    entries = [entry(i, n) for i, n in enumerate(line_counts)]
    last = len(entries) - 1
    # A crash loses the timeline writes of some folds (never the last one here); the ledger's
    # record kept their outcomes in `recent`, within its memory of RECENT entries.
    lose = data.draw(st.frozensets(st.integers(max(0, last - RECENT + 1), last - 1)))
    table, _, _ = fold_all(entries, chunk_lines, lose=lose)
    assert history(KEY, table.get(KEY), table.get) == b"".join(lines for _, lines in entries)


def test_a_repeat_writes_nothing():
    entries = [entry(i) for i in range(5)]
    table, recent, _ = fold_all(entries, 2)
    assert writes_after_fold(KEY, table[KEY], recent, 2) == []


def test_a_timeline_ahead_of_the_record_gets_no_copies():
    # The record lost its last two folds (its changelog trailed), the timeline did not: folding
    # the same entries again gives the same outcomes, which the timeline already holds.
    entries = [entry(i) for i in range(6)]
    table, _, _ = fold_all(entries, 3)
    recent = tuple(entries[:4])
    for i in (4, 5):
        recent = recent + (entries[i],)
        table.update(writes_after_fold(KEY, table[KEY], recent, 3))
    assert history(KEY, table[KEY], table.get) == b"".join(lines for _, lines in entries)


def test_the_one_value_layout_reads_as_an_open_chunk():
    old = entry(0)[1] + entry(1)[1]
    assert load_head(old) == Head(0, old)
    assert history(KEY, old, {}.get) == old
    writes = writes_after_fold(KEY, old, (entry(0), entry(1), entry(2)), 8)
    assert history(KEY, dict(writes)[KEY], {}.get) == old + entry(2)[1]


def test_nothing_remembered_adds_nothing():
    assert missing(Head(), ()) == b""
    assert history(KEY, None, {}.get) is None


def test_with_journal_offsets_a_timeline_far_ahead_of_the_record_gets_no_copies():
    # As above, but the timeline is so far ahead that the record's newest entries were sealed
    # away: matching lines in the open chunk cannot tell; the head's journal offset can.
    entries = [(*entry(i), 100 + i) for i in range(12)]
    table, _, _ = fold_all(entries, 2)
    assert load_head(table[KEY]).upto == 111
    recent = tuple(entries[:4])
    for i in range(4, 12):
        recent = recent + (entries[i],)
        table.update(writes_after_fold(KEY, table[KEY], recent, 2))
    assert history(KEY, table[KEY], table.get) == b"".join(e[1] for e in entries)


def test_with_journal_offsets_lost_lines_come_back_in_order():
    entries = [(*entry(i, 2), 100 + i) for i in range(10)]
    table, recent, _ = fold_all(entries, 3, lose=frozenset({6, 7, 8}))
    # The next fold (the redelivery of the last entry) writes back everything after `upto`.
    table.update(writes_after_fold(KEY, table[KEY], recent, 3))
    assert history(KEY, table[KEY], table.get) == b"".join(e[1] for e in entries)
    assert writes_after_fold(KEY, table[KEY], recent, 3) == []
