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
    return (
        "the app's topics are not laid out for their partition counts: "
        + "; ".join(parts)
        + ". Partitions were added outside `mynapoint rescale`, which moves nothing: the "
        "people's state is still where the old count put it, and a worker would decide the moved "
        "people on an empty state. This worker decided nothing. Stop every worker, bring every topic of "
        "the app to one partition count (the largest they have now), then run `mynapoint "
        "rescale --to-partitions M` with M larger than that count, and start the workers with "
        "--partitions M (docs/RUNBOOK.md, \"Partitions added by hand\")")
