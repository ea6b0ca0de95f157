"""The event decoder: precise rejections, and the fast path equal to the plain decoder."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codec import EVENT_DECODER, BadInput, decode_event, decode_event_fast
from tests.core.test_properties import EVENT_DICTS

BASE = {"type": "card.suspended", "event_id": "e1", "person_id": "P1",
        "occurred_at": "2021-01-01T00:00:00+09:00"}


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("person_id", "P1\n", "invalid_field"),  # Python's `$` would accept a final newline
        ("event_id", "e1\n", "invalid_field"),
        ("person_id", "123456789012", "my_number_in_person_id"),
        ("person_id", "", "invalid_field"),
        ("occurred_at", "2021-01-01T00:00:00", "naive_timestamp"),
        ("type", "card.lost", "unknown_type"),
    ],
)
def test_bad_fields_are_named_with_a_reason(field, value, reason):
    with pytest.raises(BadInput) as info:
        decode_event(msgspec.json.encode({**BASE, field: value}))
    assert info.value.reason == reason
    assert field in info.value.message or reason in ("unknown_type", "my_number_in_person_id")


def test_a_byte_order_mark_is_named_as_such():
    # Editors on Windows save "UTF-8" with a BOM; JSON (RFC 8259) has none. msgspec alone says
    # "invalid character (byte 0)", which does not tell the integrator what to change.
    raw = b"\xef\xbb\xbf" + msgspec.json.encode(BASE)
    with pytest.raises(BadInput) as info:
        decode_event(raw)
    assert info.value.reason == "not_json"
    assert "byte order mark" in info.value.message and "without a BOM" in info.value.message


def test_a_type_given_twice_is_not_called_unknown():
    # It was "unknown event type 'card.suspended'; expected one of: ..., card.suspended, ...".
    raw = msgspec.json.encode(BASE)[:-1] + b',"type":"card.resumed"}'
    with pytest.raises(BadInput) as info:
        decode_event(raw)
    assert info.value.reason == "invalid_field"
    assert info.value.message == "`type` is given more than once, with different values: send it once"


def _outcome(fn, raw: bytes):
    try:
        return ("ok", msgspec.json.encode(fn(raw)))
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return ("error", type(exc).__name__, str(exc))


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    EVENT_DICTS.map(msgspec.json.encode),
    st.binary(max_size=120),
    st.dictionaries(st.sampled_from(list(BASE) + ["mykey_id", "amount_yen", "x"]),
                    st.one_of(st.text(max_size=70), st.integers(), st.none()),
                    max_size=8).map(msgspec.json.encode),
))
def test_fast_decoder_is_exactly_the_plain_decoder(raw):
    assert _outcome(decode_event_fast, raw) == _outcome(EVENT_DECODER.decode, raw)


@pytest.mark.parametrize(("data", "lines"), [
    (b"", []),
    (b"a\n", [b"a"]),
    (b"a", [b"a"]),
    (b"a\n\nb", [b"a", b"", b"b"]),
    (b"a\r\nb\n", [b"a\r", b"b"]),
    (b"\n", [b""]),
])
def test_event_lines_split_on_newlines_only(data, lines):
    import io

    from schemas.codec import event_lines

    assert list(event_lines(io.BytesIO(data))) == lines


@given(st.lists(st.sampled_from([b"\n", b"\r", b"{}", b"x", b"\xe3\x81\x82"]), max_size=30))
@settings(max_examples=200)
def test_simulate_reads_the_lines_every_other_command_reads(parts):
    # simulate's block reader is its own (it is on the hot path), so it is held to `event_lines`.
    import io

    from schemas.codec import event_lines
    from streams.audit.simulate import _blocks

    data = b"".join(parts)
    blocks = [line for block in _blocks(io.BytesIO(data)) for line in block]
    assert blocks == list(event_lines(io.BytesIO(data)))
