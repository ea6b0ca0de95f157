"""A person's published outcomes in chunks: an append rewrites a bounded amount, not the history.

The live pipeline keeps every person's outcomes, as JSON lines, in the `timeline` table for the
status API (`GET /persons/{id}/history`). Kept as one value per person, every append rewrote the
whole history, so a person's changelog bytes grew with the square of their outcomes. The layout:

    person_id              -> head: msgpack [sealed, open]
    person_id \\x00 <n>     -> sealed chunk n (0-based, JSON lines), written once, never changed

`open` holds the newest lines. Once it has `CHUNK_LINES` lines or more, the next append first
writes it out as sealed chunk `sealed` and starts a new `open`, so a non-empty `open` always ends
with the last lines appended. Chunks are written before the head that counts them; both go to the
same changelog partition (a table write takes the partition of the event being processed), so a
crash loses a suffix of those writes, never a chunk the head points to. A head from before this
layout (plain JSON lines, starting with `{`) reads as an open chunk with nothing sealed.

What to append is taken from the ledger record's memory of its recent outcomes (`recent`, oldest
first), not only from the event just decided: if a crash lost timeline writes that the ledger's own
record kept, the next fold of that person (the redelivery itself, or their next event) writes the
missing lines back, in order.

Which remembered lines are missing: the head also records `upto`, the journal offset of the newest
entry whose lines it holds, and the ledger's memory gives each entry's offset, so what is missing is
exactly the remembered entries after `upto`. This holds whichever of the `persons` and `timeline`
changelogs a crash cut shorter: a timeline ahead of the record (its lines already sealed away)
gets no copies, one behind gets the lines back. (A person's journal entries stay in one partition,
so their offsets only grow.) A head without `upto` (written before it existed, or by an offline
fold that knows no offsets: -1) falls back to finding the newest remembered entry's lines in the
open chunk. The ledger forgets the lines of entries that can no longer be lost and keeps an anchor
with none: an empty `lines` is always found, so nothing before it is appended again. An older
reader ignores the third element of a head (msgpack arrays of `array_like` Structs may be longer).

Pure: no framework imports; `streams/pipeline/ledger.py` reads and writes the table, `streams/web/http.py` reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec

#: Lines in an open chunk before it is sealed: an append rewrites at most this many old lines.
CHUNK_LINES = 32


class Head(msgspec.Struct, frozen=True, array_like=True):
    sealed: int = 0
    open: bytes = b""
    # The journal offset of the newest entry whose lines are here; -1: not known.
    upto: int = -1


_HEAD_ENCODER = msgspec.msgpack.Encoder()
_HEAD_DECODER = msgspec.msgpack.Decoder(Head)
EMPTY_HEAD = Head()


def load_head(value: bytes | None) -> Head:
    if value is None:
        return EMPTY_HEAD
    if value[:1] == b"{":
        return Head(0, value)  # the one-value layout from before chunks
    return _HEAD_DECODER.decode(value)


def chunk_key(person_key: bytes, n: int) -> bytes:
    # Person ids are [A-Za-z0-9_-]: a NUL cannot occur in one, so chunk keys never meet a person's.
    return person_key + b"\x00" + str(n).encode()


def with_upto(head_value: bytes, move: Callable[[int], int]) -> bytes:
    """A head with its journal offset `upto` moved (`mynapoint rescale` rewrites the journal at
    new offsets); a head without one, or a chunk, is returned as it is."""
    head = load_head(head_value)
    if head.upto < 0:  # not known, or the layout from before chunks
        return head_value
    return _HEAD_ENCODER.encode(Head(head.sealed, head.open, move(head.upto)))


def person_of_row(row_key: bytes) -> bytes:
    """The person key of a timeline row (a head or a chunk): its table partition is the person's."""
    return row_key.split(b"\x00", 1)[0]


#: The ledger's remembered entries, oldest first: (entry id, JSON lines) or (entry id, JSON lines,
#: journal offset or -1), as `streams.core.ledger.remembered_lines` gives them.
Recent = Sequence[tuple[Any, ...]]


def _at(item: tuple[Any, ...]) -> int:
    return item[2] if len(item) > 2 else -1


def missing(head: Head, recent: Recent) -> bytes:
    """The lines of `recent` (oldest first) that the timeline does not hold yet."""
    if not recent:
        return b""
    if head.upto >= 0:
        return b"".join(r[1] for r in recent if _at(r) > head.upto)
    for i in range(len(recent) - 1, -1, -1):
        if recent[i][1] in head.open:
            return b"".join(r[1] for r in recent[i + 1 :])
    if head.sealed == 0 and not head.open:
        return b"".join(r[1] for r in recent)
    # None of the remembered entries is in the open chunk: whatever lies between is out of
    # memory, so only the newest entry is added (never lines the timeline may already hold).
    return recent[-1][1]


def writes_after_fold(
    person_key: bytes, head_value: bytes | None, recent: Recent | Callable[[int], Recent],
    chunk_lines: int = CHUNK_LINES,
) -> list[tuple[bytes, bytes]]:
    """The (key, value) table writes, in order, that bring a timeline up to the ledger record:
    a chunk sealed by this append first, then the head that counts it.

    `recent` may be a function of the head's `upto` (-1: not known) that gives the remembered
    entries, so that only the lines the head may miss are built
    (`streams.core.ledger.remembered_lines(record, upto)`)."""
    head = load_head(head_value)
    if callable(recent):
        recent = recent(head.upto)
    lines = missing(head, recent)
    if not lines:
        return []
    upto = max(head.upto, _at(recent[-1]))
    if head.open.count(b"\n") >= chunk_lines:
        return [(chunk_key(person_key, head.sealed), head.open),
                (person_key, _HEAD_ENCODER.encode(Head(head.sealed + 1, lines, upto)))]
    return [(person_key, _HEAD_ENCODER.encode(Head(head.sealed, head.open + lines, upto)))]


def history(person_key: bytes, head_value: bytes | None,
            get: Callable[[bytes], bytes | None]) -> bytes | None:
    """All of a person's lines, oldest first; None when the person has no timeline."""
    if head_value is None:
        return None
    head = load_head(head_value)
    parts = [get(chunk_key(person_key, n)) or b"" for n in range(head.sealed)]
    parts.append(head.open)
    return b"".join(parts)
