"""One decoder for input events and one encoder for outcomes, built once at import.

Bad input never raises past this module's callers as anything but `BadInput`, which carries a
stable reason code (for metrics and dead letters) and a message naming the field and the fault.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from schemas.events import TYPES_BY_NAME, AnyEvent, Event
from schemas.outcomes import AnyOutcome

EVENT_DECODER: msgspec.json.Decoder[Event] = msgspec.json.Decoder(AnyEvent)  # type: ignore[arg-type]
OUTCOME_ENCODER = msgspec.json.Encoder()
OUTCOME_DECODER: msgspec.json.Decoder[AnyOutcome] = msgspec.json.Decoder(AnyOutcome)  # type: ignore[arg-type]
EVENT_ENCODER = msgspec.json.Encoder()

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

_MY_NUMBER_RE = re.compile(r"(?<!\d)\d{12}(?!\d)")
_AT_PATH_RE = re.compile(r"^(?P<msg>.*) - at `(?P<path>[^`]*)`$", re.S)
_MISSING_RE = re.compile(r"^Object missing required field `(?P<field>[^`]*)`(?: - at `(?P<path>[^`]*)`)?$")
_RAW_LIMIT = 200


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


def _identifying_fields(raw: bytes) -> dict[str, str]:
    try:
        loose = _LOOSE_DECODER.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
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
        return BadInput(NOT_JSON, f"not valid JSON: {exc}")
    text = str(exc)
    fields = _identifying_fields(raw)
    if text.startswith("Expected `object`"):
        got = text.split("got ", 1)[-1].strip("`")
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


def decode_event(raw: bytes) -> Event:
    """Decodes and validates one input record, or raises `BadInput`."""
    try:
        return EVENT_DECODER.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise explain_error(raw, exc) from None


def encode_event(event: Event) -> bytes:
    return EVENT_ENCODER.encode(event)
