"""`mynapoint simulate`: the rules over a JSONL file in file order, with no broker (CONTRACT.md)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import BinaryIO

from schemas.codec import (
    DECODE_ERRORS,
    EVENT_DECODER,
    OUTCOME_ENCODER,
    RELAXED_TO_EVENT,
    dead_letter,
    decode_relaxed,
    explain_error,
    is_clean,
)
from schemas.events import Event
from schemas.outcomes import DeadLetter, Outcome
from streams.audit.gcpause import no_cyclic_gc
from streams.core.config import RulesConfig
from streams.core.engine import Engine

_BATCH = 4096
_READ_SIZE = 1 << 20


def dead_letter_for_line(raw: bytes, lineno: int, exc: Exception) -> DeadLetter:
    return dead_letter(explain_error(raw, exc), f"line-{lineno}", raw.rstrip(b"\r\n"),
                       line=lineno)


def run(lines: Iterable[bytes], cfg: RulesConfig, engine: Engine | None = None) -> Iterator[list[Outcome]]:
    """Yields outcomes in processing order, in batches; every line gives a decision or a dead letter."""
    return _run(((line,) for line in lines), cfg, engine)


def _run(
    blocks: Iterable[Sequence[bytes]], cfg: RulesConfig, engine: Engine | None
) -> Iterator[list[Outcome]]:
    """`run` over blocks of lines: a list is a block known to be clean (`is_clean`), any other
    sequence has its lines checked one by one."""
    eng = engine if engine is not None else Engine(cfg)
    process = eng.process
    decode = EVENT_DECODER.decode
    relaxed = decode_relaxed
    to_event = RELAXED_TO_EVENT
    clean_line = is_clean
    out: list[Outcome] = []
    extend = out.extend
    lineno = 0
    for block in blocks:
        clean = type(block) is list
        for raw in block:
            lineno += 1
            ev: Event | None = None
            # The fast path (schemas.codec): same events and errors as `decode`, or None.
            if clean or clean_line(raw):
                try:
                    fast = relaxed(raw)
                except DECODE_ERRORS:
                    pass
                else:
                    ev = to_event[type(fast)](fast)
            if ev is None:
                try:
                    ev = decode(raw)
                except DECODE_ERRORS as exc:
                    out.append(dead_letter_for_line(raw, lineno, exc))
                    continue
            extend(process(ev))
            if len(out) >= _BATCH:
                yield out
                out = []
                extend = out.extend
    if out:
        yield out


def _blocks(stream: BinaryIO) -> Iterator[Sequence[bytes]]:
    """The stream's lines, read in large pieces: lists of lines from clean pieces (`is_clean`),
    tuples otherwise.

    Splitting on b"\n" only: a line is what a producer wrote between newlines, and the final
    newline of a file does not start another line.
    """
    read = getattr(stream, "read1", None) or stream.read
    pending: list[bytes] = []  # the start of a line that continues in the next piece
    while True:
        piece = read(_READ_SIZE)
        if not piece:
            break
        if b"\n" not in piece:
            pending.append(piece)
            continue
        if pending:
            pending.append(piece)
            piece = b"".join(pending)
            pending = []
        lines = piece.split(b"\n")
        rest = lines.pop()
        if rest:
            pending.append(rest)
        yield lines if is_clean(piece) else tuple(lines)
    if pending:
        last = b"".join(pending)
        yield [last] if is_clean(last) else (last,)


def simulate_to(stream: BinaryIO, out: BinaryIO, cfg: RulesConfig, observer=None) -> Engine:
    engine = Engine(cfg)
    encode_lines = OUTCOME_ENCODER.encode_lines
    write = out.write
    with no_cyclic_gc():
        for batch in _run(_blocks(stream), cfg, engine):
            if observer is not None:
                observer(batch)
            write(encode_lines(batch))
    out.flush()
    return engine
