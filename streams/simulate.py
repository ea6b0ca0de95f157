"""`mynapoint simulate`: the rules over a JSONL file in file order, with no broker (CONTRACT.md)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import BinaryIO

from schemas.codec import EVENT_DECODER, OUTCOME_ENCODER, explain_error, raw_excerpt
from schemas.events import Event
from schemas.outcomes import DeadLetter, Outcome
from streams.config import RulesConfig
from streams.engine import Engine

import msgspec

_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError)
_BATCH = 4096


def dead_letter_for_line(raw: bytes, lineno: int, exc: Exception) -> DeadLetter:
    bad = explain_error(raw, exc)
    return DeadLetter(
        error=bad.message,
        reason=bad.reason,
        outcome_id=f"line-{lineno}",
        line=lineno,
        event_id=bad.fields.get("event_id"),
        person_id=bad.fields.get("person_id"),
        type=bad.fields.get("type"),
        raw=raw_excerpt(raw.rstrip(b"\r\n")),
    )


def run(lines: Iterable[bytes], cfg: RulesConfig, engine: Engine | None = None) -> Iterator[list[Outcome]]:
    """Yields outcomes in processing order, in batches; every line gives a decision or a dead letter."""
    eng = engine if engine is not None else Engine(cfg)
    process = eng.process
    decode = EVENT_DECODER.decode
    out: list[Outcome] = []
    extend = out.extend
    lineno = 0
    for raw in lines:
        lineno += 1
        try:
            ev: Event = decode(raw)
        except _DECODE_ERRORS as exc:
            out.append(dead_letter_for_line(raw, lineno, exc))
            continue
        extend(process(ev))
        if len(out) >= _BATCH:
            yield out
            out = []
            extend = out.extend
    if out:
        yield out


def _lines(stream: BinaryIO) -> Iterator[bytes]:
    # Splitting on b"\n" only: a line is what a producer wrote between newlines, and the final
    # newline of a file does not start another line.
    for line in stream:
        if line.endswith(b"\n"):
            line = line[:-1]
        yield line


def simulate_to(stream: BinaryIO, out: BinaryIO, cfg: RulesConfig, observer=None) -> Engine:
    engine = Engine(cfg)
    encode_lines = OUTCOME_ENCODER.encode_lines
    write = out.write
    for batch in run(_lines(stream), cfg, engine):
        if observer is not None:
            observer(batch)
        write(encode_lines(batch))
    out.flush()
    return engine
