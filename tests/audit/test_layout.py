"""The checks a worker runs before it starts (`streams.audit.layout`): records of the journal and
the claims must be on their key's partition at the topic's count, each state changelog must have
its source topic's count, the journal and the claims must keep every record and the changelogs
be compacted."""

from __future__ import annotations

import pytest

from schemas import topics
from streams.audit.layout import (
    ConfigProblem,
    Misplaced,
    config_message,
    config_problems,
    count_mismatches,
    layout_message,
    misplaced,
)

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
    # A changelog of another count alone may be one made empty by other tooling.
    alone = layout_message([], ["x-changelog has 4 partitions, its source topic y has 8"], {})
    assert alone is not None and "delete it, and the worker makes it" in alone
    assert "mynapoint rescale --to-partitions M" in alone


HISTORY = dict(topics.HISTORY_REQUIRED)


@pytest.mark.parametrize(("actual", "found"), [
    # What the worker makes: nothing to say.
    ({"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}, []),
    # A broker that reports only what a topic was made with (Tansu): the rest is not judged.
    ({"retention.ms": "-1"}, []),
    # The cluster's defaults on a journal made by other tooling: deleted after 7 days.
    ({"retention.ms": "604800000", "retention.bytes": "-1", "cleanup.policy": "delete"},
     [("retention.ms", "604800000", "-1")]),
    # Compaction would keep one journal record per person.
    ({"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "compact"},
     [("cleanup.policy", "compact", "delete")]),
])
def test_the_journal_must_keep_every_record(actual, found):
    problems = config_problems({topics.JOURNAL: HISTORY}, {topics.JOURNAL: actual})
    assert [(p.key, p.value, p.required) for p in problems] == found


def test_a_changelog_must_be_compacted_and_a_missing_topic_is_left_out():
    required = {"app-persons-changelog": dict(topics.CHANGELOG_CONFIG), topics.CLAIMS: HISTORY}
    assert config_problems(required, {"app-persons-changelog": {"cleanup.policy": "compact"}}) == []
    problems = config_problems(required, {"app-persons-changelog": {"cleanup.policy": "delete"}})
    assert problems == [ConfigProblem("app-persons-changelog", "cleanup.policy", "delete",
                                      "compact")]


def test_the_settings_message_names_each_setting_and_the_command_that_sets_it():
    assert config_message([], "k:9092") is None
    text = config_message([ConfigProblem(topics.JOURNAL, "retention.ms", "604800000", "-1"),
                           ConfigProblem(topics.JOURNAL, "retention.bytes", "1073741824", "-1"),
                           ConfigProblem("c", "cleanup.policy", "delete", "compact")], "k:9092")
    assert text is not None
    assert f"{topics.JOURNAL} has retention.ms=604800000 (needs -1" in text
    assert "c has cleanup.policy=delete (needs compact" in text
    assert (f"kafka-configs.sh --bootstrap-server k:9092 --alter --entity-type topics "
            f"--entity-name {topics.JOURNAL} --add-config retention.ms=-1,retention.bytes=-1"
            ) in text
    assert "--entity-name c --add-config cleanup.policy=compact" in text
    assert "This worker decided nothing" in text
