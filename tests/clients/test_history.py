"""`mynapoint export` and the history read from the topics (clients/history.py), without a broker:
the topics' records are handed in as `read_topics` would return them. A journal record of several
entries is a line per entry in the file and an item per entry in the history; an unreadable one
is counted once."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any, NamedTuple

import msgspec
import pytest

from clients import history as H
from schemas import topics
from schemas.journal import JOURNAL_ENCODER, AnswerEntry, EventEntry
from streams.audit.export import read_export
from streams.core.versions import event_entry_v0
from tests.audit.journals import batch

EVENT = EventEntry(topic=topics.CARDS, partition=0, offset=3, value=b'{"person_id":"P1"}')
ANSWER = AnswerEntry(claim_kind="account", claim_key="k", person_id="P2", event_id="e2",
                     granted=True)
NEWER_BATCH = msgspec.msgpack.encode({"k": "batch", "v": 2, "persons": [b"P1"], "entries": []})


class Rec(NamedTuple):
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def _dump(journal: list[Rec], begins: dict[int, int] | None = None) -> H.TopicDump:
    dump = H.TopicDump()
    dump.records = {topics.JOURNAL: journal, **{t: [] for t in H.OUTCOME_TOPICS}}
    dump.begins = {topics.JOURNAL: begins or {0: 0}}
    dump.ends = {topics.JOURNAL: {p: b + len([r for r in journal if r.partition == p])
                                  for p, b in dump.begins[topics.JOURNAL].items()}}
    dump.partitions = {topics.JOURNAL: len(dump.begins[topics.JOURNAL])}
    return dump


@pytest.fixture
def topics_hold(monkeypatch: pytest.MonkeyPatch):
    """Makes `read_topics` return the given journal records (and no outcomes, no tables), the
    partitions' log starts at `begins` (default: partition 0, from 0)."""
    def hold(journal: list[Rec], begins: dict[int, int] | None = None) -> None:
        async def read_topics(*_args: Any, **_kwargs: Any) -> H.TopicDump:
            return _dump(journal, begins)

        monkeypatch.setattr(H, "read_topics", read_topics)

    return hold


@pytest.mark.parametrize(("journal", "entries", "unreadable"), [
    pytest.param([Rec(0, 0, b"P1", JOURNAL_ENCODER.encode(EVENT))], 1, 0, id="one-entry"),
    pytest.param([Rec(0, 0, b"P1", event_entry_v0(EVENT))], 1, 0, id="one-entry-v0"),
    pytest.param([Rec(0, 0, b"P1", batch((b"P1", EVENT), (b"P2", ANSWER)))], 2, 0, id="batch"),
    pytest.param([Rec(0, 0, b"P1", JOURNAL_ENCODER.encode(EVENT)),
                  Rec(0, 1, b"P1", batch((b"P1", EVENT), (b"P2", ANSWER), (b"P3", ANSWER)))],
                 4, 0, id="one-then-a-batch"),
    pytest.param([Rec(0, 0, b"P1", NEWER_BATCH)], 1, 1, id="newer-batch"),
    pytest.param([Rec(0, 0, b"P1", b"\xc1")], 1, 1, id="garbage"),
    pytest.param([Rec(0, 0, b"P1", msgspec.msgpack.encode({"k": "event", "v": 9}))], 1, 1,
                 id="newer-entry"),
])
def test_export_counts_entries_and_unreadable_records(topics_hold, journal: list[Rec],
                                                      entries: int, unreadable: int) -> None:
    topics_hold(journal)
    out = io.BytesIO()
    counts = asyncio.run(H.export_history("broker:9092", out, rules_version="r-1",
                                          config_toml=None, app_id="app", tables=False))
    assert (counts.journal, counts.unreadable) == (entries, unreadable)
    lines = [json.loads(ln) for ln in out.getvalue().splitlines()]
    assert lines[-1] == {"record": "end", "journal": entries, "outcomes": 0, "table": 0}
    assert sum(1 for ln in lines if ln["record"] == "journal") == entries
    history = read_export(io.BytesIO(out.getvalue()))
    assert history.journal_size == entries - unreadable
    assert len(history.unreadable) == unreadable


def test_read_history_gives_each_entry_of_a_batch_at_its_offset(topics_hold) -> None:
    topics_hold([Rec(0, 0, b"P2", JOURNAL_ENCODER.encode(ANSWER)),
                 Rec(0, 1, b"P1", batch((b"P1", EVENT), (b"P2", ANSWER))),
                 Rec(0, 2, b"P1", NEWER_BATCH)])
    history = asyncio.run(H.read_history("broker:9092", app_id="app", outcomes=False,
                                         tables=False))
    assert [(o, k) for o, k, _ in history.journal[0]] == [(0, "P2"), (1, "P1"), (1, "P2")]
    assert [where for where, _ in history.unreadable] == ["journal 0/2"]


def test_a_journal_whose_start_was_deleted_is_a_difference_replay_names(topics_hold) -> None:
    # Partition 1 emptied altogether, partition 2's first 4 records gone: no record shows it,
    # the broker's log start does. Replay says so instead of differing for no visible reason.
    from streams.audit.replay import UNREADABLE, replay_history
    from streams.core.config import load_config

    topics_hold([], begins={0: 0, 1: 7, 2: 4})
    history = asyncio.run(H.read_history("broker:9092", app_id="app", outcomes=False,
                                         tables=False))
    assert [where for where, _ in history.unreadable] == ["journal 1/0-6", "journal 2/0-3"]
    _, report = replay_history(history, load_config(), tables=False)
    assert report.differences[UNREADABLE] == 2 and not report.ok
    said = [d.detail for d in report.examples if d.kind == UNREADABLE]
    assert "the first 7 offsets of journal partition 1 were deleted" in said[0]
    # A replay of partition 0 alone has nothing to say of the others.
    part = asyncio.run(H.read_history("broker:9092", app_id="app", outcomes=False, tables=False,
                                      partitions=frozenset({0})))
    assert part.unreadable == []
    # The export file keeps it (its header), and a replay of the file says the same.
    out = io.BytesIO()
    counts = asyncio.run(H.export_history("broker:9092", out, rules_version="r-1",
                                          config_toml=None, app_id="app", tables=False))
    assert counts.deleted == {1: 7, 2: 4}
    from_file = read_export(io.BytesIO(out.getvalue()))
    assert from_file.unreadable == history.unreadable and from_file.deleted == {1: 7, 2: 4}
    # explain notes it for a person of such a partition, found or not, and not for the others.
    from schemas.topics import partition_for_key
    from streams.audit.explain import explain_history, render

    person = next(f"P{i:07d}" for i in range(100) if partition_for_key(b"P%07d" % i, 3) == 1)
    other = next(f"P{i:07d}" for i in range(100) if partition_for_key(b"P%07d" % i, 3) == 0)
    said = explain_history(person, from_file, load_config())
    assert said.notes == ["the journal's partition 1 no longer holds its first 7 offsets "
                          "(deleted by retention or DeleteRecords), where this person's history "
                          "is: this timeline may lack their earliest events"]
    assert "note: the journal's partition 1" in render(said)
    assert explain_history(other, from_file, load_config()).notes == []
