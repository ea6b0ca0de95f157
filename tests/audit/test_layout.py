"""The layout check a worker runs before it starts (`streams.audit.layout`): records of the
journal and the claims must be on their key's partition at the topic's count, and each state
changelog must have its source topic's count."""

from __future__ import annotations

import pytest

from schemas import topics
from streams.audit.layout import Misplaced, count_mismatches, layout_message, misplaced

PEOPLE = [f"P{i:07d}".encode() for i in range(200)]


def _laid_out(keys, n):
    """Records as a producer lays them out at `n` partitions: (partition, offset, key)."""
    offsets: dict[int, int] = {}
    out = []
    for key in keys:
        p = topics.partition_for_key(key, n)
        out.append((p, offsets.get(p, 0), key))
        offsets[p] = offsets.get(p, 0) + 1
    return out


@pytest.mark.parametrize("n", [1, 4, 8, 32])
def test_records_laid_out_at_the_topics_count_are_in_place(n):
    assert misplaced(topics.JOURNAL, _laid_out(PEOPLE, n), n) == []


@pytest.mark.parametrize(("laid_out_at", "now"), [(4, 8), (4, 5), (8, 16), (1, 2)])
def test_records_laid_out_at_an_older_count_are_found(laid_out_at, now):
    # What `kafka-topics.sh --alter --partitions` leaves: the records where the old count put
    # them, the topic with more partitions.
    records = _laid_out(PEOPLE, laid_out_at)
    wrong = misplaced(topics.JOURNAL, records, now)
    moved = [r for r in records if topics.partition_for_key(r[2], now) != r[0]]
    assert len(wrong) == len(moved) > 0
    assert {(m.partition, m.offset) for m in wrong} == {(p, o) for p, o, _ in moved}
    assert all(m.belongs == topics.partition_for_key(k, now)
               for m, (_, _, k) in zip(wrong, moved, strict=True))


def test_keyless_records_are_left_out():
    assert misplaced(topics.CLAIMS, [(3, 0, None)], 4) == []


def test_a_changelog_with_another_count_than_its_source_is_named():
    sources = {"app-persons-changelog": topics.JOURNAL, "app-claims-changelog": topics.CLAIMS,
               "app-timeline-changelog": topics.JOURNAL}
    counts = {topics.JOURNAL: 8, topics.CLAIMS: 8, "app-persons-changelog": 4,
              "app-claims-changelog": 8}  # the timeline's changelog not made yet
    assert count_mismatches(sources, counts) == [
        f"app-persons-changelog has 4 partitions, its source topic {topics.JOURNAL} has 8"]
    assert count_mismatches(sources, {**counts, "app-persons-changelog": 8}) == []


def test_the_message_says_what_happened_and_what_to_do():
    assert layout_message([], [], {}) is None
    wrong = [Misplaced(topics.JOURNAL, 1, 20, 5), Misplaced(topics.JOURNAL, 2, 7, 6)]
    text = layout_message(wrong, ["x-changelog has 4 partitions, its source topic y has 8"],
                          {topics.JOURNAL: 8})
    assert text is not None
    assert f"2 of the last records of {topics.JOURNAL}" in text
    assert f"{topics.JOURNAL}/1/20 belongs on partition 5" in text
    assert "x-changelog has 4 partitions" in text
    assert "mynapoint rescale --to-partitions M" in text
    assert "This worker decided nothing" in text
    # No key is named: a key may be a person's id.
    assert "P0" not in text
