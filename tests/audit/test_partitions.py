"""Replay in parallel: `replay --partitions` on disjoint subsets of the journal partitions adds up
to the replay of the whole (streams.audit.export.Subset, streams.audit.replay.combine_reports)."""

from __future__ import annotations

import io
import os

import pytest

from devtools.demo import generate
from schemas.topics import murmur2, partition_for_key
from streams.audit.export import (
    SubsetError,
    journal_partitions_of,
    keep_subset,
    make_subset,
    parse_partitions,
    person_subset,
    read_export,
)
from streams.audit.replay import combine_reports, record_offline, replay_history
from streams.core.config import load_config

CFG = load_config(None)


def test_murmur2_is_kafkas() -> None:
    from aiokafka.partitioner import murmur2 as kafkas

    for n in range(300):
        data = os.urandom(n % 41)
        assert murmur2(data) == kafkas(data)
    # Known values of the Java client (Utils.toPositive(murmur2(key)) % n).
    assert partition_for_key(b"P0000001", 4) == (kafkas(b"P0000001") & 0x7FFFFFFF) % 4


def test_parse_partitions() -> None:
    assert parse_partitions("0-3") == {0, 1, 2, 3}
    assert parse_partitions("0-1,5,7-8") == {0, 1, 5, 7, 8}
    for bad in ("", "a", "3-1", "-2", "1-x"):
        with pytest.raises(SubsetError):
            parse_partitions(bad)
    with pytest.raises(SubsetError, match="do not exist"):
        make_subset(frozenset({3, 4}), 4)


def _export(partitions: int = 8) -> bytes:
    lines = list(generate(people=300, seed=11, bad_ratio=0.02))
    rec = record_offline(lines, CFG, partitions=partitions)
    out = io.BytesIO()
    rec.write_export(out, CFG, exported_at="2026-01-01T00:00:00+09:00")
    return out.getvalue()


def test_union_of_subsets_is_the_whole() -> None:
    data = _export()
    whole = read_export(io.BytesIO(data))
    n = journal_partitions_of(whole.header)
    assert n == 8
    _, full = replay_history(whole, CFG)
    assert full.ok and full.people == 300
    parts = []
    for spec in ("0-2", "3", "4-7"):
        h = keep_subset(read_export(io.BytesIO(data)), make_subset(parse_partitions(spec), n))
        _, rep = replay_history(h, CFG)
        assert rep.ok, rep.render()
        assert 0 < rep.people < 300
        parts.append(rep.as_dict())
    combined = combine_reports(parts)
    want = full.as_dict()
    for k in ("ok", "people", "journal_entries", "events", "claim_answers", "outcomes",
              "tables_compared", "differences", "published_rules_versions"):
        assert combined[k] == want[k], k
    assert combined["partitions"]["complete"] is True


def test_a_difference_is_reported_by_its_subset_only() -> None:
    data = _export()
    whole = read_export(io.BytesIO(data))
    # Drop one person's grants: the subset holding the person reports them missing.
    victim = next(o.outcome["person_id"] for o in whole.outcomes
                  if o.outcome and o.outcome.get("kind") == "grant")
    home = partition_for_key(victim.encode(), 8)
    reports = {}
    for p in range(8):
        h = keep_subset(read_export(io.BytesIO(data)), make_subset(frozenset({p}), 8))
        h.outcomes = [o for o in h.outcomes if not (o.outcome and o.outcome.get("person_id")
                      == victim and o.outcome.get("kind") == "grant")]
        _, rep = replay_history(h, CFG)
        reports[p] = rep
    assert not reports[home].ok and reports[home].differences["missing"] > 0
    assert all(r.ok for p, r in reports.items() if p != home)
    combined = combine_reports([r.as_dict() for r in reports.values()])
    assert combined["ok"] is False
    assert combined["differences"]["missing"] == reports[home].differences["missing"]


def test_combine_notes_overlap() -> None:
    data = _export()
    n = 8
    reps = []
    for spec in ("0-4", "4-7"):
        h = keep_subset(read_export(io.BytesIO(data)), make_subset(parse_partitions(spec), n))
        reps.append(replay_history(h, CFG)[1].as_dict())
    combined = combine_reports(reps)
    assert combined["partitions"]["overlapping"] == [4]
    assert combined["partitions"]["complete"] is False


@pytest.mark.parametrize("count", [1, 4, 7, 64])
def test_a_persons_subset_is_their_journal_partition(count: int) -> None:
    # `explain --bootstrap` reads only this partition of the journal.
    for person in ("P0000042", "P0000001", "Z-9_x"):
        subset = person_subset(person, count)
        assert subset.only == {partition_for_key(person.encode(), count)} and subset.of == count
        assert subset.has_person(person)


def test_a_journal_without_partitions_has_no_persons_subset() -> None:
    with pytest.raises(SubsetError, match="no partitions"):
        person_subset("P1", 0)
