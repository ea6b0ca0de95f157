"""The journal: the ordered per-person record that the ledger folds and that replay reads.

Two kinds of entry share the topic (keyed by person_id): an input event as it was received (its
original bytes and where it came from), and the answer to a cross-person claim. Entries are
msgpack, tagged on `k`, and carry a version `v` so an old entry is upcast on read, never rewritten.
"""

from __future__ import annotations

import msgspec

JOURNAL_VERSION = 1


class EventEntry(msgspec.Struct, frozen=True, tag_field="k", tag="event", kw_only=True):
    v: int = JOURNAL_VERSION
    topic: str
    partition: int
    offset: int
    # The input record's value exactly as the producer sent it (already validated by intake).
    value: bytes
    late: bool = False

    @property
    def source_id(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


class AnswerEntry(msgspec.Struct, frozen=True, tag_field="k", tag="answer", kw_only=True):
    v: int = JOURNAL_VERSION
    claim_kind: str
    claim_key: str
    person_id: str
    event_id: str
    granted: bool
    holder: str | None = None

    @property
    def source_id(self) -> str:
        return f"answer/{self.claim_kind}/{self.event_id}"


class ClaimRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Sent by the ledger, keyed by the claim key, to the partition that owns that account/budget."""

    v: int = JOURNAL_VERSION
    kind: str
    key: str
    person_id: str
    event_id: str


JournalEntry = EventEntry | AnswerEntry

JOURNAL_ENCODER = msgspec.msgpack.Encoder()
JOURNAL_DECODER: msgspec.msgpack.Decoder[JournalEntry] = msgspec.msgpack.Decoder(JournalEntry)  # type: ignore[arg-type]
CLAIM_DECODER = msgspec.msgpack.Decoder(ClaimRequest)
