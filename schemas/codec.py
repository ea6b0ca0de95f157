"""One decoder for input events and one encoder for outcomes, built once at import.

Bad input never raises past this module's callers as anything but `BadInput`, which carries a
stable reason code (for metrics and dead letters) and a message naming the field and the fault.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Annotated, Any, Union, get_args, get_origin

import msgspec

from schemas.events import EVENT_TYPES, PRINTABLE_ASCII_1_64, TYPES_BY_NAME, AnyEvent, Event
from schemas.outcomes import AnyOutcome, DeadLetter

EVENT_DECODER: msgspec.json.Decoder[Event] = msgspec.json.Decoder(AnyEvent)  # type: ignore[arg-type]
OUTCOME_ENCODER = msgspec.json.Encoder()
OUTCOME_DECODER: msgspec.json.Decoder[AnyOutcome] = msgspec.json.Decoder(AnyOutcome)  # type: ignore[arg-type]

# Dead-letter reason codes (CONTRACT.md: "dead-lettered with a reason").
NOT_JSON = "not_json"
NOT_AN_OBJECT = "not_an_object"
MISSING_FIELD = "missing_field"
INVALID_FIELD = "invalid_field"
UNKNOWN_TYPE = "unknown_type"
NAIVE_TIMESTAMP = "naive_timestamp"
MY_NUMBER = "my_number_in_person_id"
EMPTY = "empty"
BAD_KEY = "bad_key"
MISSING_VALUE = "missing_value"
# ... and for records of the pipeline's own topics (journal, claims) that cannot be used: these
# point at another producer writing to an internal topic, a stored value from a newer version, or
# a bug; the dead letter's topic/partition/offset says which record to look at.
UNREADABLE_JOURNAL_ENTRY = "unreadable_journal_entry"
UNREADABLE_STATE = "unreadable_state"
UNREADABLE_CLAIM = "unreadable_claim"
INTERNAL_ERROR = "internal_error"
#: Every dead-letter reason above (the metrics start each one's counter at 0).
DEAD_LETTER_REASONS: tuple[str, ...] = (
    NOT_JSON, NOT_AN_OBJECT, MISSING_FIELD, INVALID_FIELD, UNKNOWN_TYPE, NAIVE_TIMESTAMP, MY_NUMBER,
    EMPTY, BAD_KEY, MISSING_VALUE, UNREADABLE_JOURNAL_ENTRY, UNREADABLE_STATE, UNREADABLE_CLAIM,
    INTERNAL_ERROR,
)

#: What decoding a record can raise. msgspec reports invalid UTF-8 inside a string as the
#: builtin UnicodeDecodeError, not as a DecodeError: every decoder of outside bytes catches this.
DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError)

_MY_NUMBER_RE = re.compile(r"(?<!\d)\d{12}(?!\d)")
_AT_PATH_RE = re.compile(r"^(?P<msg>.*) - at `(?P<path>[^`]*)`$", re.S)
_MISSING_RE = re.compile(r"^Object missing required field `(?P<field>[^`]*)`(?: - at `(?P<path>[^`]*)`)?$")
_RAW_LIMIT = 200
_BOM = b"\xef\xbb\xbf"  # what editors on Windows often put first in a "UTF-8" file


class BadInput(Exception):
    """A record that does not fit the contract: it is dead-lettered, never dropped."""

    def __init__(self, reason: str, message: str, fields: dict[str, str] | None = None):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.fields = fields or {}


class _Loose(msgspec.Struct):
    """Whatever identifying fields a bad record still has, to make its dead letter findable."""

    event_id: Any = None
    person_id: Any = None
    type: Any = None


_LOOSE_DECODER = msgspec.json.Decoder(_Loose)


def mask_my_numbers(text: str) -> str:
    """Masks every free-standing 12-digit number: dead letters must not carry a My Number."""
    return _MY_NUMBER_RE.sub("############", text)


def raw_excerpt(raw: bytes) -> str:
    text = raw[:_RAW_LIMIT].decode("utf-8", "replace")
    if len(raw) > _RAW_LIMIT:
        text += "..."
    return mask_my_numbers(text)


def dead_letter(bad: BadInput, outcome_id: str, raw: bytes | None, *, line: int | None = None,
                topic: str | None = None, partition: int | None = None,
                offset: int | None = None) -> DeadLetter:
    """The dead letter of a bad input: the reason, where the input was (a file line, or a topic
    partition and offset), the identifying fields it still had, and its masked excerpt."""
    return DeadLetter(
        error=bad.message,
        reason=bad.reason,
        outcome_id=outcome_id,
        line=line,
        topic=topic,
        partition=partition,
        offset=offset,
        event_id=bad.fields.get("event_id"),
        person_id=bad.fields.get("person_id"),
        type=bad.fields.get("type"),
        raw=raw_excerpt(raw) if raw is not None else None,
    )


def _identifying_fields(raw: bytes) -> dict[str, str]:
    try:
        loose = _LOOSE_DECODER.decode(raw)
    except DECODE_ERRORS:
        return {}
    out: dict[str, str] = {}
    for name in ("event_id", "person_id", "type"):
        value = getattr(loose, name)
        if isinstance(value, str) and 0 < len(value) <= 64 and value.isprintable():
            out[name] = mask_my_numbers(value)
    return out


def explain_error(raw: bytes, exc: Exception) -> BadInput:
    """Turns a msgspec error into a reason code and a message that says what to fix."""
    # ValidationError subclasses DecodeError: only a parse failure is "not JSON".
    if not isinstance(exc, msgspec.ValidationError):
        if not raw.strip():
            return BadInput(EMPTY, "empty line: expected one JSON object per line")
        if raw.startswith(_BOM):
            return BadInput(NOT_JSON, "not valid JSON: the line starts with a UTF-8 byte order "
                            "mark (bytes EF BB BF), which JSON does not allow: write the file "
                            "as UTF-8 without a BOM")
        if isinstance(exc, UnicodeDecodeError):
            return BadInput(NOT_JSON, f"not valid JSON: JSON text must be UTF-8 ({exc})")
        return BadInput(NOT_JSON, f"not valid JSON: {exc}")
    text = str(exc)
    fields = _identifying_fields(raw)
    if text.startswith("Expected `object`"):
        got: str | None = text.split("got ", 1)[-1].strip("`")
        return BadInput(NOT_AN_OBJECT, f"expected a JSON object (one event), got {got}", fields)
    missing = _MISSING_RE.match(text)
    if missing:
        field = missing.group("field")
        return BadInput(MISSING_FIELD, f"missing required field `{field}`", fields)
    at = _AT_PATH_RE.match(text)
    if at:
        msg, path = at.group("msg"), at.group("path")
        field = path.removeprefix("$.")
        if field == "type":
            known = ", ".join(sorted(TYPES_BY_NAME))
            got = fields.get("type")
            if got in TYPES_BY_NAME:
                # A known type refused: the object names `type` twice (msgspec goes by the first,
                # the last one is read here), with different values.
                return BadInput(INVALID_FIELD, "`type` is given more than once, with different "
                                "values: send it once", fields)
            shown = f"'{got}'" if got is not None else "a non-string"
            return BadInput(UNKNOWN_TYPE, f"unknown event type {shown}; expected one of: {known}", fields)
        if field == "person_id" and isinstance(fields.get("person_id"), str):
            if fields["person_id"] == "############":
                fields.pop("person_id")
                return BadInput(
                    MY_NUMBER,
                    "`person_id` is a 12-digit number, the shape of a My Number (個人番号), which "
                    "must never enter the system: send the person's opaque id instead",
                    fields,
                )
        if "timezone component" in msg:
            return BadInput(
                NAIVE_TIMESTAMP,
                f"`{field}` has no UTC offset: send an RFC 3339 timestamp such as "
                "2021-04-01T10:00:00+09:00",
                fields,
            )
        return BadInput(INVALID_FIELD, f"`{field}`: {_plain(msg)}", fields)
    return BadInput(INVALID_FIELD, text, fields)


def _plain(msg: str) -> str:
    # msgspec writes "Expected `str` matching regex '...'"; an integrator needs the rule, not the regex.
    if "matching regex" in msg:
        if "A-Za-z0-9]{8}" in msg:
            return "expected 8 letters or digits (a MyKey ID)"
        if "A-Za-z0-9_-]{1,64}" in msg:
            return "expected 1-64 characters of [A-Za-z0-9_-]"
        if "x20-\\x7e" in msg or "\\x20-\\x7e" in msg or "x20" in msg:
            return "expected 1-64 printable ASCII characters"
    return msg


def event_lines(stream: Iterable[bytes]) -> Iterator[bytes]:
    """The lines of an events file (JSON Lines) as every command reads them, `simulate` included
    (its block reader splits the same way): on b"\\n" only, a b"\\r" staying in its line, and the
    final newline of a file starting no line. `stream` is a binary file or any iterable of its
    lines, each ending with b"\\n" except perhaps the last."""
    for line in stream:
        yield line[:-1] if line.endswith(b"\n") else line


def decode_event(raw: bytes) -> Event:
    """Decodes and validates one input record, or raises `BadInput`."""
    try:
        return EVENT_DECODER.decode(raw)
    except DECODE_ERRORS as exc:
        raise explain_error(raw, exc) from None


# --- The fast path ---------------------------------------------------------------------------
#
# Most of EVENT_DECODER's time goes to its regex checks (msgspec calls `pattern.search` for every
# constrained string: five or six per event, about 1.4 us of the 1.8 us a payment takes). On a
# clean line (see `is_clean`) every decoded string is printable ASCII, so the pattern
# `^[\x20-\x7e]{1,64}$` says no more than "1 to 64 characters", which msgspec checks in C.
# `decode_clean` therefore decodes clean lines with relaxed twins of the event types (that pattern
# replaced by length limits; any other pattern checked afterwards with the very same regex) and
# builds the real event from the result. Anything else, and anything the relaxed decoder or a
# check refuses, goes to EVENT_DECODER itself: same events, same errors, byte for byte (checked
# against the plain decoder by bench/ and by comparing `mynapoint simulate` outputs).


def _rejects_raw_control_characters() -> bool:
    # JSON forbids unescaped control characters in strings (RFC 8259, section 7) and msgspec
    # enforces it; `is_clean` relies on that, so the fast path is off if it ever stopped.
    try:
        msgspec.json.decode(b'"\x01"')
    except msgspec.DecodeError:
        return True
    return False


FAST_PATH = _rejects_raw_control_characters()


def is_clean(raw: bytes) -> bool:
    """True when every JSON string in `raw` can only decode to printable ASCII.

    That is: all bytes ASCII, no backslash (so no escape) and no DEL; control characters cannot
    appear raw inside a JSON string. Works on one line or on a block of lines.
    """
    return FAST_PATH and raw.isascii() and 92 not in raw and 127 not in raw


_PRINTABLE_1_64 = PRINTABLE_ASCII_1_64
_ASCII_1_64 = msgspec.Meta(min_length=1, max_length=64)


def _relaxed(tp: Any) -> tuple[Any, re.Pattern[str] | None]:
    """The type to decode with on a clean line, and the regex still to check afterwards."""
    if get_origin(tp) is Annotated:
        base, *metas = get_args(tp)
        if base is str and len(metas) == 1 and isinstance(metas[0], msgspec.Meta):
            meta = metas[0]
            if meta.pattern is not None and meta.min_length is None and meta.max_length is None:
                if meta.pattern == _PRINTABLE_1_64:
                    return Annotated[str, _ASCII_1_64], None
                return str, re.compile(meta.pattern)
    return tp, None


def _twin(cls: type[Event]) -> tuple[type, Any]:
    """A relaxed twin of an event type, and a function from a twin to the real event or None."""
    conf = cls.__struct_config__
    fields: list[tuple[Any, ...]] = []
    checks: list[tuple[str, re.Pattern[str]]] = []
    for f in msgspec.structs.fields(cls):
        tp, regex = _relaxed(f.type)
        if regex is not None:
            checks.append((f.name, regex))
        if f.default is not msgspec.NODEFAULT:
            fields.append((f.name, tp, f.default))
        elif f.default_factory is not msgspec.NODEFAULT:
            fields.append((f.name, tp, msgspec.field(default_factory=f.default_factory)))
        else:
            fields.append((f.name, tp))
    twin = msgspec.defstruct(
        "Relaxed" + cls.__name__,
        fields,
        tag_field=conf.tag_field,
        tag=conf.tag,
        kw_only=True,
        array_like=conf.array_like,
        forbid_unknown_fields=conf.forbid_unknown_fields,
        rename={f.name: f.encode_name for f in msgspec.structs.fields(cls)},
        gc=False,  # short-lived and acyclic: not worth the collector's bookkeeping
    )
    # The converter is generated (as dataclasses and namedtuple do) so that it costs one keyword
    # call (about 0.1 us, against about 0.3 us for each regex check it replaces).
    env: dict[str, Any] = {"_cls": cls}
    body = ["def convert(m):"]
    for i, (name, regex) in enumerate(checks):
        env[f"_rx{i}"] = regex.search
        body.append(f"    if _rx{i}(m.{name}) is None:\n        return None")
    args = ", ".join(f"{n}=m.{n}" for n in cls.__struct_fields__)
    body.append(f"    return _cls({args})")
    exec("\n".join(body), env)  # noqa: S102 - generated from the event types above
    return twin, env["convert"]


_TWINS = {cls: _twin(cls) for cls in EVENT_TYPES}
_RELAXED_DECODER = msgspec.json.Decoder(Union[tuple(t for t, _ in _TWINS.values())])  # type: ignore[misc]  # noqa: UP007
#: Relaxed twin type -> function building the real event (None: let EVENT_DECODER decide).
RELAXED_TO_EVENT: dict[type, Any] = {twin: convert for twin, convert in _TWINS.values()}
decode_relaxed = _RELAXED_DECODER.decode


def decode_clean(raw: bytes) -> Event | None:
    """The event on a line known to be clean (see above), or None when EVENT_DECODER must decide."""
    try:
        relaxed = decode_relaxed(raw)
    except DECODE_ERRORS:
        return None
    return RELAXED_TO_EVENT[type(relaxed)](relaxed)  # type: ignore[no-any-return]


def decode_event_fast(raw: bytes) -> Event:
    """Exactly `EVENT_DECODER.decode(raw)` (same event, same exception), several times faster."""
    if is_clean(raw):
        ev = decode_clean(raw)
        if ev is not None:
            return ev
    return EVENT_DECODER.decode(raw)
