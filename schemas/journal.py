"""The journal: the ordered per-person record that the ledger folds and that replay reads.

Two kinds of entry share the topic (keyed by person_id): an input event as it was received (its
original bytes and where it came from), and the answer to a cross-person claim. Entries are
msgpack, tagged on `k`, and carry a version `v` so an old entry is upcast on read, never rewritten.

A journal record holds one entry, or a batch of them (`JournalBatch`): intake journals the events
one release lets go together, since a record costs a worker far more than an entry in it
(docs/BENCHMARKS.md, issue 13). A batch's entries are all on the partition of its record, each
with its person, and never two of one person: so a journal offset still names one entry of a
person, which is what the ledger's records remember. Readers take a record's entries through
`streams.core.versions.journal_entries`, where a record of one entry is a batch of one.
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

#: The most entries intake puts in one journal record (each an input event of up to a few KB).
JOURNAL_BATCH_MAX = 64
#: ... and the most input bytes (a larger event goes alone): a batch stays well below the
#: brokers' default largest record (`message.max.bytes`, 1 MB), as the events it holds do.
JOURNAL_BATCH_BYTES = 256 * 1024
JOURNAL_BATCH_VERSION = 1


class JournalBatch(msgspec.Struct, frozen=True, tag_field="k", tag="batch", kw_only=True):
    """Entries journaled in one record, in their order: `persons[i]` is the key (person_id) of
    `entries[i]`; no person twice. The record's own key is its first person's."""

    v: int = JOURNAL_BATCH_VERSION
    persons: list[bytes]
    entries: list[JournalEntry]


JournalRecord = EventEntry | AnswerEntry | JournalBatch

JOURNAL_ENCODER = msgspec.msgpack.Encoder()
JOURNAL_DECODER: msgspec.msgpack.Decoder[JournalEntry] = msgspec.msgpack.Decoder(JournalEntry)  # type: ignore[arg-type]
CLAIM_DECODER = msgspec.msgpack.Decoder(ClaimRequest)
JOURNAL_RECORD_DECODER: msgspec.msgpack.Decoder[JournalRecord] = msgspec.msgpack.Decoder(
    JournalRecord)  # type: ignore[arg-type]
