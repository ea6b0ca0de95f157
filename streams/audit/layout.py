"""Whether an app's keyed topics are still laid out for the partition counts they have.

A person's journal entries, `persons` and `timeline` rows live on the person's partition
(`schemas.topics.partition_for_key` over the journal's partition count), a claim key's rows on
its claims partition. Kafka's own way of adding partitions (`kafka-topics.sh --alter
--partitions`, an operator's script) moves nothing: the records and the state stay where the old
count put them, and producers then route most keys to other partitions. A worker started on such
topics would decide every moved person on an empty state (a second grant of a campaign's points,
a payment account linked twice), with no error anywhere; replay would show it afterwards.
`mynapoint rescale` is the way that moves everything.

So a worker checks, before it starts, what these functions compute over the last records of the
journal and of the claims topic (`clients.offline.layout_problem`), and refuses to start when
they are not on their key's partition, and when a state changelog's partition count is not its
source topic's.

Topics made by an operator's tooling rather than by the worker can also carry the cluster's
defaults: a journal deleted after 7 days (replay, explain and rescale need all of it), a
changelog deleted by age instead of compacted (a worker restoring its tables would forget the
people whose rows aged out, and decide them again). `config_problems` finds those
(`clients.offline.config_problem` refuses to start on them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from schemas.topics import partition_for_key


class Misplaced(NamedTuple):
    """A record that is not on its key's partition at the topic's partition count."""

    topic: str
    partition: int
    offset: int
    belongs: int  # the partition its key gives at that count


def misplaced(topic: str, records: Iterable[tuple[int, int, bytes | None]],
              partitions: int) -> list[Misplaced]:
    """The `records` ((partition, offset, key), keyless ones skipped) of `topic` that are not
    on their key's partition at `partitions` partitions."""
    out = []
    for partition, offset, key in records:
        if key is None:
            continue
        belongs = partition_for_key(key, partitions)
        if belongs != partition:
            out.append(Misplaced(topic, partition, offset, belongs))
    return out


def count_mismatches(sources: Mapping[str, str], counts: Mapping[str, int]) -> list[str]:
    """"changelog has A partitions, its source topic S has B" for each state changelog
    (`sources`: changelog -> source topic) whose count differs from its source's; topics not in
    `counts` (not made yet) are left out."""
    out = []
    for changelog, source in sorted(sources.items()):
        if changelog in counts and source in counts and counts[changelog] != counts[source]:
            out.append(f"{changelog} has {counts[changelog]} partitions, its source topic "
                       f"{source} has {counts[source]}")
    return out


def layout_message(wrong: list[Misplaced], mismatches: list[str],
                   counts: Mapping[str, int]) -> str | None:
    """What a worker says when it refuses to start over `wrong` records and `mismatches`, or None
    when there are neither."""
    if not wrong and not mismatches:
        return None
    parts = []
    if wrong:
        by_topic: dict[str, list[Misplaced]] = {}
        for m in wrong:
            by_topic.setdefault(m.topic, []).append(m)
        for topic, ms in sorted(by_topic.items()):
            m = ms[0]
            parts.append(
                f"{len(ms)} of the last records of {topic} are not on the partition their key "
                f"gives at its {counts.get(topic, '?')} partitions (for one, "
                f"{m.topic}/{m.partition}/{m.offset} belongs on partition {m.belongs})")
    parts.extend(mismatches)
    if not wrong:
        return (
            "the app's state changelogs do not have their source topics' partition counts: "
            + "; ".join(parts)
            + ". A worker restores a partition's state from the same partition of its changelog, "
            "so it would decide people on the wrong state or none. This worker decided nothing. "
            "A changelog made by other tooling before any worker ran is empty: delete it, and the "
            "worker makes it with its source's count. Otherwise partitions were added by hand: "
            "stop every worker, bring every topic of the app to one partition count, run "
            "`mynapoint rescale --to-partitions M` with M larger than that count, and start the "
            "workers with --partitions M (docs/RUNBOOK.md, \"Partitions added by hand\")")
    return (
        "the app's topics are not laid out for their partition counts: "
        + "; ".join(parts)
        + ". Partitions were added outside `mynapoint rescale`, which moves nothing: the "
        "people's state is still where the old count put it, and a worker would decide the moved "
        "people on an empty state. This worker decided nothing. Stop every worker, bring every topic of "
        "the app to one partition count (the largest they have now), then run `mynapoint "
        "rescale --to-partitions M` with M larger than that count, and start the workers with "
        "--partitions M (docs/RUNBOOK.md, \"Partitions added by hand\")")


class ConfigProblem(NamedTuple):
    """A topic setting in effect that is not what the worker requires."""

    topic: str
    key: str
    value: str
    required: str


def config_problems(required: Mapping[str, Mapping[str, str]],
                    actual: Mapping[str, Mapping[str, str]]) -> list[ConfigProblem]:
    """The settings of `actual` (topic -> setting -> value in effect) that differ from
    `required` (topic -> setting -> value); topics and settings not reported are left out."""
    out = []
    for topic, settings in sorted(required.items()):
        have = actual.get(topic)
        if have is None:
            continue
        for key, want in settings.items():
            got = have.get(key)
            if got is not None and got != want:
                out.append(ConfigProblem(topic, key, got, want))
    return out


_WHY = {
    "retention.ms": "the broker deletes its records by age",
    "retention.bytes": "the broker deletes its records by size",
}


def config_message(problems: list[ConfigProblem], bootstrap: str) -> str | None:
    """What a worker says when it refuses to start over `problems`, or None when there are none:
    each setting and why it loses history or state, and the command that sets it right."""
    if not problems:
        return None
    by_topic: dict[str, list[ConfigProblem]] = {}
    for p in problems:
        by_topic.setdefault(p.topic, []).append(p)
    said, commands = [], []
    for topic, ps in by_topic.items():
        for p in ps:
            why = _WHY.get(p.key)
            if p.key == "cleanup.policy":
                why = ("compaction keeps one record per key" if p.required == "delete"
                       else "the broker deletes rows by age instead of keeping each key's latest")
            said.append(f"{topic} has {p.key}={p.value} (needs {p.required}: {why})")
        settings = ",".join(f"{p.key}={p.required}" for p in ps)
        commands.append(f"kafka-configs.sh --bootstrap-server {bootstrap} --alter --entity-type "
                        f"topics --entity-name {topic} --add-config {settings}")
    return ("topic settings that would lose the app's history or state: " + "; ".join(said)
            + ". The journal is the history that replay, explain and rescale read in full, and "
            "the changelogs are the state a worker restores. This worker decided nothing. Set "
            "them (the records still there are kept), then start the worker again: "
            + "; ".join(commands) + " (docs/RUNBOOK.md, \"Topic settings\")")
