"""Takeover, the pure part: one engine's stored state, laid out as the other engine stores it.

`mynapoint takeover --to quix|faust` (clients/takeover.py does the Kafka I/O) moves a stopped
deployment from one engine to the other. Both engines run the same steps over the same topics and
the same consumer group (`--app-id`), and keep the same rows (a person's ledger record, the
timeline's chunks, the claim holders); only where they keep them differs:

| rows | Faust: table (its changelog topic) | Quix Streams: the stateful dataframe's state |
|---|---|---|
| a person's record | `persons`, key `person_id` | the journal's, key `person_id|p:person_id` |
| timeline chunks | `timeline`, key `person_id[\\x00n]` | the journal's, key `person_id|t:person_id[\\x00n]` |
| claim holders | `claims`, key `row` | the claims', key `claim_key|row` |

(Quix prefixes each state key with the key of the record being processed and `|`: the person for
the journal, the claim key for the claims.) Every row stays on the partition of its routing key,
so the rows are copied, never decided again; the group's committed offsets stay as they are, so the
new engine's workers go on where the old ones stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

from schemas import topics
from streams.audit.rescale import EntryAt, Record, moved_lookup, routing_key, rows_at, table_at

#: Quix's state rows of each Faust table: the source topic of the stateful dataframe, and the tag
#: before the row's key (streams/pipeline's stores on Quix, quix_worker/app.py).
QUIX_STATE_OF_TABLE: dict[str, tuple[str, bytes]] = {
    "persons": (topics.JOURNAL, topics.QUIX_PERSONS_TAG),
    "timeline": (topics.JOURNAL, topics.QUIX_TIMELINE_TAG),
    "claims": (topics.CLAIMS, b""),
}
#: The source topics of the Quix worker's stateful dataframes, one changelog each.
QUIX_STATE_SOURCES = tuple(dict.fromkeys(source for source, _ in QUIX_STATE_OF_TABLE.values()))
#: The column family every row of the Quix worker's state is in (its changelog records say it in
#: a header, which Quix's recovery requires).
QUIX_COLUMN_FAMILY = b"default"
QUIX_COLUMN_FAMILY_HEADER = "__column_family__"


class TakeoverError(ValueError):
    """The stored state cannot be taken over as it is (the message says what to do)."""


def quix_key(table: str, row: bytes) -> bytes:
    """Where the Quix worker keeps the row `row` of the Faust table `table`."""
    _, tag = QUIX_STATE_OF_TABLE[table]
    return routing_key(table, row) + topics.QUIX_PREFIX_SEPARATOR + tag + row


def faust_row(source: str, key: bytes) -> tuple[str, bytes] | None:
    """(table, row) of a key of the Quix worker's state on `source`; None for a key that is not
    one of the rows the steps keep."""
    sep = topics.QUIX_PREFIX_SEPARATOR
    if source == topics.JOURNAL:
        # A person_id has no `|` (CONTRACT.md's pattern), so the first one ends the prefix.
        prefix, found, rest = key.partition(sep)
        if not found:
            return None
        for table in ("persons", "timeline"):
            _, tag = QUIX_STATE_OF_TABLE[table]
            if rest.startswith(tag) and routing_key(table, rest[len(tag):]) == prefix:
                return table, rest[len(tag):]
        return None
    if source == topics.CLAIMS:
        # A claim key may hold `|` (an account): the prefix is the one the row routes to.
        at = key.find(sep)
        while at >= 0:
            row = key[at + len(sep):]
            if routing_key("claims", row) == key[:at]:
                return "claims", row
            at = key.find(sep, at + 1)
        return None
    return None


def to_quix(tables: Mapping[str, Mapping[bytes, bytes]], partitions: int, *, n: int = 0,
            moved: Mapping[EntryAt, int] | None = None) -> dict[str, list[list[Record]]]:
    """The Faust tables' rows (latest value per key) as the Quix worker's state changelogs, by
    source topic, each a list of `partitions` partitions in a deterministic order: each table's
    rows placed as `streams.audit.rescale.table_at` places them (with `n` and `moved`, the
    journal offsets they remember moved as a rescale from `n` partitions moves them)."""
    where = moved_lookup(moved)
    out: dict[str, list[list[Record]]] = {}
    for source in QUIX_STATE_SOURCES:
        out[source] = [[] for _ in range(partitions)]
        rows = quix_rows_at(source, lambda t: sorted(tables.get(t, {}).items()), partitions,
                            n=n, where=where)
        for q, key, value in rows:
            out[source][q].append((key, value))
    return out


def quix_rows_at(source: str, rows_of: Callable[[str], Iterable[tuple[bytes, bytes]]],
                 partitions: int, *, n: int = 0, where: Callable[[EntryAt], int] | None = None,
                 ) -> Iterator[tuple[int, bytes, bytes]]:
    """(partition, key, value) of each row of the Quix worker's state changelog of `source`: the
    rows of the Faust tables it holds, `rows_of(table)` in key order, each placed as
    `streams.audit.rescale.rows_at` places it, table after table."""
    for table in tables_of(source):
        for q, row, value in rows_at(table, rows_of(table), partitions, n=n, where=where):
            yield q, quix_key(table, row), value


def tables_of(source: str) -> list[str]:
    """The Faust tables whose rows the Quix worker keeps in the state of `source`, in order."""
    return [t for t, (src, _) in QUIX_STATE_OF_TABLE.items() if src == source]


def faust_tables(states: Mapping[str, Mapping[bytes, bytes]]) -> dict[str, dict[bytes, bytes]]:
    """The Quix worker's state rows (latest value per key, by source topic) as the Faust tables'
    rows, by table.

    Raises `TakeoverError` for a key that is none of the steps' rows: it would be lost.
    """
    tables: dict[str, dict[bytes, bytes]] = {t: {} for t in QUIX_STATE_OF_TABLE}
    for source, rows in states.items():
        for key, value in rows.items():
            found = faust_row(source, key)
            if found is None:
                raise unknown_state_key(source, key)
            table, row = found
            tables[table][row] = value
    return tables


def unknown_state_key(source: str, key: bytes) -> TakeoverError:
    """The error for a key of the Quix state of `source` that is none of the steps' rows."""
    return TakeoverError(
        f"the Quix state of {source} holds a key that is none of the pipeline's rows "
        f"({key[:60]!r}): was it written by another version of the worker? Take over with that "
        "version")


def to_faust(states: Mapping[str, Mapping[bytes, bytes]], partitions: int
             ) -> dict[str, list[list[Record]]]:
    """The Quix worker's state rows as the Faust tables' changelogs, by table, each a list of
    `partitions` partitions, placed and ordered as `streams.audit.rescale.table_at` does."""
    return {table: table_at(table, rows, partitions)
            for table, rows in faust_tables(states).items()}
