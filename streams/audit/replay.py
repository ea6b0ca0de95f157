"""Replay: rebuild every person from the journal and check what the pipeline published and stored.

Pure: the journal entries (already upgraded by `streams.core.versions`) are folded into fresh
in-memory ledger records with `streams.core.ledger.fold` and the same configuration, exactly as the live
ledger agent folds them, so every outcome is derived again. Cross-person answers are journal
entries themselves, so nothing is raced again: the replay is deterministic.

Then `compare` checks, by outcome id:

- `missing`: replay derives an outcome that was never published;
- `unexpected`: a published decision, grant or alert that replay does not derive;
- `content_differs`: published under the id replay derives, with other content;
- `wrong_topic`: published on another topic than its kind's;
- `unreadable`: a stored journal entry, table value or output record that cannot be read;

and, when the live `persons` table was read, each person's state in it against the replayed one:
`state_differs`, `state_missing` (replayed, absent from the table) and `state_unexpected` (in the
table, never in the journal). Exact repeats (same id, same content) are what the pipeline's
effectively-once design produces after a redelivery: counted, never a difference. Two different
input records can also get identical outcomes (a third copy of an event_id is a `duplicate_event`
with the same id and content as the second): an id derived n times must be published at least n
times, or it is `missing`. Dead letters come from intake, before the journal, so replay cannot
derive them: counted, not compared.

`record_offline` at the end is an in-memory stand-in for the live pipeline (tests, benchmark).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import msgspec

from schemas import topics
from schemas.journal import EventEntry, JournalEntry
from schemas.outcomes import AnyOutcome, Outcome
from streams.audit.export import History, Published, other_rules, person_of
from streams.audit.gcpause import no_cyclic_gc
from streams.core.config import RulesConfig
from streams.core.ledger import LedgerRecord, fold
from streams.core.state import PersonState

MISSING = "missing"
UNEXPECTED = "unexpected"
CONTENT_DIFFERS = "content_differs"
WRONG_TOPIC = "wrong_topic"
UNREADABLE = "unreadable"
STATE_DIFFERS = "state_differs"
STATE_MISSING = "state_missing"
STATE_UNEXPECTED = "state_unexpected"

KINDS = (MISSING, UNEXPECTED, CONTENT_DIFFERS, WRONG_TOPIC, UNREADABLE, STATE_DIFFERS,
         STATE_MISSING, STATE_UNEXPECTED)

TOPIC_OF_KIND = topics.TOPIC_OF_KIND
_COMPARED_KINDS = frozenset({"decision", "grant", "alert"})

_to_builtins = msgspec.to_builtins


@dataclass
class Replayed:
    """The result of folding a journal: every person's record and every outcome, in order."""

    records: dict[str, LedgerRecord] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    entries: int = 0
    events: int = 0
    answers: int = 0
    redelivered: int = 0

    @property
    def waiting(self) -> int:
        """People whose last request still waits for a claim's answer."""
        return sum(1 for r in self.records.values() if r.waiting is not None)


def replay(entries: History | Iterable[tuple[str | None, JournalEntry]],
           cfg: RulesConfig) -> Replayed:
    """Folds journal entries into fresh records: a History (its partitions one after the other,
    each in offset order), or (key, entry) pairs in journal order per partition."""
    out = Replayed()
    with no_cyclic_gc():
        if isinstance(entries, History):
            for p in sorted(entries.journal):
                _fold_into(out, entries.journal[p], cfg)
        else:
            _fold_into(out, ((None, key, entry) for key, entry in entries), cfg)
    return out


def _fold_into(out: Replayed, entries: Iterable[tuple[Any, str | None, JournalEntry]],
               cfg: RulesConfig) -> None:
    records = out.records
    extend = out.outcomes.extend
    get = records.get
    n = events = answers = repeats = 0
    for _, key, entry in entries:
        n += 1
        person = key if key is not None else person_of(None, entry)
        folded = fold(get(person), entry, cfg)
        records[person] = folded.record
        if folded.repeat:
            repeats += 1
            continue
        if type(entry) is EventEntry:
            events += 1
        else:
            answers += 1
        if folded.outcomes:
            extend(folded.outcomes)
    out.entries += n
    out.events += events
    out.answers += answers
    out.redelivered += repeats


@dataclass
class Difference:
    kind: str
    person_id: str | None
    detail: str
    outcome_id: str | None = None
    where: str | None = None
    published: Any = None
    replayed: Any = None

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "person_id": self.person_id, "detail": self.detail}
        for name in ("outcome_id", "where", "published", "replayed"):
            value = getattr(self, name)
            if value is not None:
                d[name] = value
        return d


@dataclass
class Report:
    rules_version: str
    source: str = ""
    people: int = 0
    journal_entries: int = 0
    events: int = 0
    answers: int = 0
    redelivered: int = 0
    waiting: int = 0
    outcomes_replayed: int = 0
    outcomes_published: int = 0
    outcomes_compared: int = 0
    exact_repeats: int = 0
    dead_letters: int = 0
    published_rules_versions: dict[str, int] = field(default_factory=dict)
    tables_compared: int | None = None
    # {"only": [...], "of": n}: the journal partitions replayed, when not all of them.
    partitions: dict[str, Any] | None = None
    differences: Counter[str] = field(default_factory=Counter)
    examples: list[Difference] = field(default_factory=list)
    max_examples_per_kind: int = 3

    @property
    def ok(self) -> bool:
        return not self.differences

    def add(self, diff: Difference) -> None:
        self.differences[diff.kind] += 1
        if self.differences[diff.kind] <= self.max_examples_per_kind:
            self.examples.append(diff)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rules_version": self.rules_version,
            "source": self.source,
            "people": self.people,
            "journal_entries": self.journal_entries,
            "events": self.events,
            "claim_answers": self.answers,
            "redelivered_entries": self.redelivered,
            "waiting_for_claims": self.waiting,
            "outcomes": {
                "replayed": self.outcomes_replayed,
                "published_records": self.outcomes_published,
                "compared": self.outcomes_compared,
                "exact_repeats": self.exact_repeats,
                "dead_letters_not_compared": self.dead_letters,
            },
            "published_rules_versions": dict(sorted(self.published_rules_versions.items())),
            "tables_compared": self.tables_compared,
            "partitions": self.partitions,
            "differences": {k: self.differences[k] for k in KINDS if self.differences[k]},
            "total_differences": sum(self.differences.values()),
            "examples": [d.as_dict() for d in self.examples],
        }

    def render(self) -> str:
        lines = [f"== Mynapoint replay (rules {self.rules_version}) =="]
        if self.source:
            lines.append(f"source: {self.source}")
        if self.partitions:
            lines.append(f"journal partitions: {_ranges(self.partitions.get('only') or [])} of "
                         f"{self.partitions.get('of')} (the people of these partitions only)")
        lines += [
            f"people: {self.people:,}   journal entries: {self.journal_entries:,} "
            f"(events {self.events:,}, claim answers {self.answers:,}, "
            f"redelivered {self.redelivered:,})",
            f"outcomes: replayed {self.outcomes_replayed:,}; published {self.outcomes_published:,} "
            f"records ({self.exact_repeats:,} exact repeats: redeliveries, or identical decisions "
            f"on repeated inputs); compared {self.outcomes_compared:,}",
            f"dead letters published: {self.dead_letters:,} (from intake, before the journal: "
            "counted, not replayed)",
        ]
        if self.waiting:
            lines.append(f"requests still waiting for a claim answer: {self.waiting:,}")
        if self.tables_compared is None:
            lines.append("live tables: not compared")
        else:
            lines.append(f"live tables: persons, {self.tables_compared:,} people compared")
        shown = other_rules(self.published_rules_versions, self.rules_version)
        if shown:
            lines.append(
                f"note: published outcomes carry rules version(s) {shown}, not {self.rules_version}"
                ": pass the configuration the pipeline ran with (--config)"
            )
        lines.append("")
        if self.ok:
            lines.append("differences: none. Replay reproduces everything that was published"
                         + (" and stored." if self.tables_compared is not None else "."))
            return "\n".join(lines)
        lines.append(f"differences: {sum(self.differences.values()):,}")
        for kind in KINDS:
            if self.differences[kind]:
                lines.append(f"  {kind:<18} {self.differences[kind]:>10,}")
        lines.append("")
        lines.append("examples:")
        for d in self.examples:
            head = f"  {d.kind}: {d.detail}"
            lines.append(head)
            if d.published is not None:
                lines.append(f"      published: {_short(d.published)}")
            if d.replayed is not None:
                lines.append(f"      replayed:  {_short(d.replayed)}")
        return "\n".join(lines)


def _ranges(parts: Iterable[int]) -> str:
    """[0, 1, 2, 3, 8] -> "0-3,8"."""
    ps = sorted(set(parts))
    out: list[str] = []
    i = 0
    while i < len(ps):
        j = i
        while j + 1 < len(ps) and ps[j + 1] == ps[j] + 1:
            j += 1
        out.append(str(ps[i]) if i == j else f"{ps[i]}-{ps[j]}")
        i = j + 1
    return ",".join(out)


_SUMMED = ("people", "journal_entries", "events", "claim_answers", "redelivered_entries",
           "waiting_for_claims", "total_differences")


def combine_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """The report of the whole history from the JSON reports (`Report.as_dict`) of replays of
    disjoint subsets of its journal partitions (`replay --partitions`): counts add up, the
    differences too, and it is ok only if every part is. A person, entry, outcome and table row
    is in exactly one subset (`streams.audit.export.Subset`), so the sums are the whole's."""
    if not reports:
        raise ValueError("no reports to combine")
    out: dict[str, Any] = {"ok": all(r.get("ok") for r in reports),
                           "rules_version": reports[0].get("rules_version"),
                           "source": reports[0].get("source")}
    for k in _SUMMED:
        out[k] = sum(int(r.get(k) or 0) for r in reports)
    outcomes: Counter[str] = Counter()
    versions: Counter[str] = Counter()
    diffs: Counter[str] = Counter()
    tables: int | None = None
    seen: list[int] = []
    of = set()
    for r in reports:
        outcomes.update({k: int(v) for k, v in (r.get("outcomes") or {}).items()})
        versions.update(r.get("published_rules_versions") or {})
        diffs.update(r.get("differences") or {})
        if r.get("tables_compared") is not None:
            tables = (tables or 0) + int(r["tables_compared"])
        part = r.get("partitions")
        if isinstance(part, dict):
            seen.extend(part.get("only") or [])
            of.add(part.get("of"))
    out["outcomes"] = dict(outcomes)
    out["published_rules_versions"] = dict(sorted(versions.items()))
    out["tables_compared"] = tables
    out["differences"] = {k: diffs[k] for k in KINDS if diffs[k]}
    out["examples"] = [e for r in reports for e in r.get("examples") or []]
    overlap = sorted(p for p, n in Counter(seen).items() if n > 1)
    total = of.pop() if len(of) == 1 else None
    out["partitions"] = {"only": sorted(set(seen)), "of": total, "overlapping": overlap,
                         "complete": total is not None and not overlap
                         and sorted(set(seen)) == list(range(total))}
    return out


def _short(value: Any, limit: int = 300) -> str:
    text = msgspec.json.encode(value).decode()
    return text if len(text) <= limit else text[:limit] + "..."


def _label(o: Mapping[str, Any]) -> str:
    kind = o.get("kind")
    if kind == "decision":
        verdict = "accepted" if o.get("accepted") else o.get("reason")
        return f"decision on {o.get('type')} {o.get('event_id')} ({verdict})"
    if kind == "grant":
        return f"grant of {o.get('points')} points ({o.get('campaign')}) for {o.get('event_id')}"
    if kind == "alert":
        return f"alert {o.get('code')} for {o.get('event_id')}"
    return f"{kind} {o.get('outcome_id')}"


def _field_changes(published: Mapping[str, Any], replayed: Mapping[str, Any]) -> dict[str, Any]:
    keys = [k for k in dict.fromkeys([*replayed, *published]) if published.get(k) != replayed.get(k)]
    return {k: {"published": published.get(k), "replayed": replayed.get(k)} for k in keys}


def compare(replayed: Replayed, published: Iterable[Published], cfg: RulesConfig,
            **kwargs: Any) -> Report:
    """Compares a replay with the published outcomes and (`live=`) the persons table."""
    with no_cyclic_gc():
        return _compare(replayed, published, cfg, **kwargs)


def _compare(
    replayed: Replayed,
    published: Iterable[Published],
    cfg: RulesConfig,
    *,
    live: Mapping[str, LedgerRecord] | None = None,
    unreadable: Iterable[tuple[str, str]] = (),
    source: str = "",
    max_examples_per_kind: int = 3,
) -> Report:
    report = Report(rules_version=cfg.version, source=source,
                    max_examples_per_kind=max_examples_per_kind)
    report.people = len(replayed.records)
    report.journal_entries = replayed.entries
    report.events = replayed.events
    report.answers = replayed.answers
    report.redelivered = replayed.redelivered
    report.waiting = replayed.waiting

    for where, why in unreadable:
        report.add(Difference(UNREADABLE, None, f"{where}: {why}", where=where))

    # `o` is a derived outcome, or a published one (decoded JSON; None when unreadable); `oid` is
    # its outcome_id (a published one may lack it).
    o: AnyOutcome | dict[str, Any] | None
    oid: str | None
    expected: dict[str, AnyOutcome] = {}
    # Two different input records can get identical outcomes (a third copy of an event_id is a
    # duplicate_event with the same id and content as the second), so replay counts copies too.
    derived: dict[str, int] = {}
    # Every concrete outcome (Decision, Grant, Alert, DeadLetter) has an outcome_id.
    for o in cast("list[AnyOutcome]", replayed.outcomes):
        oid = o.outcome_id
        n = derived.get(oid)
        if n is None:
            expected[oid] = o
            derived[oid] = 1
        else:
            derived[oid] = n + 1
    report.outcomes_replayed = len(expected)
    expected_json: dict[str, dict[str, Any]] = {}

    matched: dict[str, int] = {}  # published copies equal to the replayed outcome
    differing: dict[str, int] = {}  # published copies with other content
    unknown: dict[str, dict[str, Any]] = {}  # published ids replay does not derive
    versions: Counter[str] = Counter()
    n_published = n_dead = 0
    for rec in published:
        n_published += 1
        o = rec.outcome
        if o is None:
            where = f"{rec.topic}/{rec.partition}/{rec.offset}"
            report.add(Difference(UNREADABLE, None, f"{where}: {rec.error}", where=where))
            continue
        kind = o.get("kind")
        if kind == "dead_letter":
            n_dead += 1
            continue
        oid = o.get("outcome_id")
        if not isinstance(kind, str) or not isinstance(oid, str):
            # Any JSON object decodes; a list or an object where a string belongs must be
            # reported like any other forgery, not break the comparison.
            where = f"{rec.topic}/{rec.partition}/{rec.offset}"
            person = o.get("person_id")
            report.add(Difference(UNEXPECTED, person if isinstance(person, str) else None,
                                  f"{where}: not an outcome replay knows (kind {kind!r}, "
                                  f"outcome_id {oid!r})", where=where, published=o))
            continue
        rv = o.get("rules_version")
        if isinstance(rv, str):
            versions[rv] += 1
        if TOPIC_OF_KIND.get(kind) != rec.topic:
            where = f"{rec.topic}/{rec.partition}/{rec.offset}"
            if kind not in _COMPARED_KINDS:
                report.add(Difference(UNEXPECTED, o.get("person_id"), f"{where}: not an outcome "
                                      f"replay knows (kind {kind!r}, outcome_id {oid!r})",
                                      where=where, published=o))
                continue
            report.add(Difference(WRONG_TOPIC, o.get("person_id"),
                                  f"{where}: a {kind} on {rec.topic}", outcome_id=oid,
                                  where=where))
        mine_json = expected_json.get(oid)
        if mine_json is None:
            mine = expected.get(oid)
            if mine is None:
                if unknown.get(oid) == o:
                    continue  # an exact repeat of an unexpected outcome, reported once
                unknown[oid] = o
                where = f"{rec.topic}/{rec.partition}/{rec.offset}"
                report.add(Difference(UNEXPECTED, o.get("person_id"), f"{where}: {_label(o)} "
                                      f"({oid}) is not derived by replay", outcome_id=oid,
                                      where=where, published=o))
                continue
            mine_json = expected_json[oid] = _to_builtins(mine)
        if mine_json == o:
            matched[oid] = matched.get(oid, 0) + 1
            continue
        differing[oid] = differing.get(oid, 0) + 1
        where = f"{rec.topic}/{rec.partition}/{rec.offset}"
        changes = _field_changes(o, mine_json)
        shown = ", ".join(
            f"{k} published {v['published']!r}, replayed {v['replayed']!r}"
            for k, v in changes.items()
        )
        report.add(Difference(CONTENT_DIFFERS, o.get("person_id"), f"{where}: "
                              f"{_label(mine_json)} ({oid}): {shown}", outcome_id=oid,
                              where=where, published=o, replayed=mine_json))
    report.outcomes_published = n_published
    report.dead_letters = n_dead
    report.outcomes_compared = len(set(matched) | set(differing))
    report.published_rules_versions = dict(versions)

    repeats = 0
    for oid, n in derived.items():
        same = matched.get(oid, 0)
        got = same + differing.get(oid, 0)
        if got >= n:
            if same > n:
                repeats += same - n
            continue
        o = expected[oid]
        mine_json = expected_json.get(oid) or _to_builtins(o)
        if got == 0:
            detail = f"{_label(mine_json)} ({oid}) was never published"
        else:
            detail = (f"{_label(mine_json)} ({oid}) is derived {n} times (identical decisions on "
                      f"repeated inputs) but was published {got} time(s)")
        report.add(Difference(MISSING, o.person_id, detail, outcome_id=oid,
                              replayed=mine_json))
    report.exact_repeats = repeats

    if live is not None:
        report.tables_compared = _compare_tables(report, replayed.records, live)
    return report


def _compare_tables(report: Report, replayed: Mapping[str, LedgerRecord],
                    live: Mapping[str, LedgerRecord]) -> int:
    compared = 0
    for person, rec in replayed.items():
        other = live.get(person)
        if other is None:
            report.add(Difference(STATE_MISSING, person, f"{person}: in the journal, but the "
                                  "persons table has no record"))
            continue
        compared += 1
        if other.person != rec.person:
            changes = state_changes(other.person, rec.person)
            report.add(Difference(
                STATE_DIFFERS, person,
                f"{person}: the persons table differs in {', '.join(changes) or 'its state'}",
                published={k: v["table"] for k, v in changes.items()},
                replayed={k: v["replayed"] for k, v in changes.items()},
            ))
    for person in live:
        if person not in replayed:
            report.add(Difference(STATE_UNEXPECTED, person, f"{person}: in the persons table, "
                                  "never in the journal"))
    return compared


def state_changes(live: PersonState | None, mine: PersonState | None) -> dict[str, dict[str, Any]]:
    """The fields of two person states that differ, as builtins."""
    a = _state_fields(live)
    b = _state_fields(mine)
    out = {}
    for k in dict.fromkeys([*b, *a]):
        if a.get(k) != b.get(k):
            out[k] = {"table": _jsonable(a.get(k)), "replayed": _jsonable(b.get(k))}
    return out


def _state_fields(state: PersonState | None) -> dict[str, Any]:
    if state is None:
        return {}
    return {name: getattr(state, name) for name in state.__struct_fields__}


def _jsonable(value: Any) -> Any:
    if isinstance(value, frozenset | set):
        return sorted(value)
    return _to_builtins(value)


def replay_history(history: History, cfg: RulesConfig, *, tables: bool = True,
                   max_examples_per_kind: int = 3) -> tuple[Replayed, Report]:
    """Replays a History and compares it with what it recorded."""
    replayed = replay(history, cfg)
    report = compare(
        replayed, history.outcomes, cfg,
        live=history.records if tables else None,
        unreadable=history.unreadable,
        source=history.source,
        max_examples_per_kind=max_examples_per_kind,
    )
    subset = history.header.get("partitions")
    report.partitions = subset if isinstance(subset, dict) else None
    return replayed, report



# --- an offline stand-in for the live pipeline (tests, benchmark, examples) ----------------------


@dataclass
class Recorded:
    """What a pipeline run leaves in Kafka, as raw records: the journal (msgpack records: one entry
    each as `record_offline` writes them, or batches), the output topics (JSON outcomes) and the
    latest `persons` table value per key (msgpack)."""

    journal: list[tuple[int, int, bytes, bytes]] = field(default_factory=list)
    outputs: list[tuple[str, int, int, bytes | None, bytes]] = field(default_factory=list)
    table: dict[bytes, bytes] = field(default_factory=dict)

    def history(self, tables: bool = True, source: str = "offline pipeline") -> History:
        from streams.audit.export import add_journal_records, decode_outcome, set_table_raw

        h = History(source=source)
        add_journal_records(h, self.journal)
        for topic, partition, offset, _key, raw in self.outputs:
            obj, err = decode_outcome(raw)
            h.outcomes.append(Published(topic, partition, offset, obj, err))
        if tables:
            h.records = {}
            for key, raw in self.table.items():
                set_table_raw(h, "offline", key, raw)
        return h

    def write_export(self, out: Any, cfg: RulesConfig, *, config_toml: str | None = None,
                     tables: bool = True, exported_at: str | None = None) -> None:
        from streams.audit.export import (
            end_line,
            header_line,
            journal_lines,
            outcome_line,
            table_line,
        )

        ends: dict[str, dict[int, int]] = {}
        # Journal keys are bytes; output keys may be None.
        _k: bytes | None
        k: bytes | None
        for p, o, _k, _r in self.journal:
            ends.setdefault("mynapoint.journal", {})[p] = o + 1
        for t, p, o, _k, _r in self.outputs:
            ends.setdefault(t, {})[p] = o + 1
        out.write(header_line(rules_version=cfg.version, config_toml=config_toml,
                              app_id="offline", source="offline pipeline", ends=ends,
                              tables=tables, exported_at=exported_at))
        n_journal = 0
        for p, o, k, r in self.journal:
            lines, _error = journal_lines(p, o, k, r)
            out.writelines(lines)
            n_journal += len(lines)  # a batch's entries are a line each
        for t, p, o, k, r in self.outputs:
            out.write(outcome_line(t, p, o, k, r))
        n_table = 0
        if tables:
            for i, (k, r) in enumerate(self.table.items()):
                out.write(table_line("persons", 0, i, k, r))
                n_table += 1
        out.write(end_line(n_journal, len(self.outputs), n_table))


def record_offline(lines: Iterable[bytes], cfg: RulesConfig, partitions: int = 4,
                   commit_every: int | None = None) -> Recorded:
    """Runs events the way the live pipeline does, in memory: intake (validate, journal each valid
    record with its source), the ledger fold, claims answered at once through the journal.

    With `commit_every`, the ledger also commits its journal offsets every that many journal
    records, as a worker does (`broker_commit_every`), and folds with the entries' offsets, so its
    records forget what a crash can no longer lose. Without it, they keep the last
    `streams.core.ledger.RECENT` entries' outcomes.

    Deterministic; partitions are Kafka's (murmur2 of the person id), as on the topics.
    """
    from schemas.codec import (
        DECODE_ERRORS,
        EVENT_DECODER,
        OUTCOME_ENCODER,
        dead_letter,
        explain_error,
    )
    from schemas.events import TYPE_NAMES
    from schemas.journal import JOURNAL_ENCODER, AnswerEntry
    from streams.core.claims import Claims
    from streams.core.ledger import RECORD_ENCODER

    rec = Recorded()
    claims = Claims(cfg.reservation_budget)
    records: dict[str, LedgerRecord] = {}
    next_offset: Counter[tuple[str, int]] = Counter()
    out_topic = topics.TOPIC_OF_KIND
    errors = DECODE_ERRORS

    def emit(topic: str, partition: int, key: bytes | None, value: bytes) -> None:
        o = next_offset[(topic, partition)]
        next_offset[(topic, partition)] = o + 1
        rec.outputs.append((topic, partition, o, key, value))

    committed: dict[int, int] = {}

    def journal(person: str, partition: int, entry: JournalEntry) -> None:
        key = person.encode()
        if commit_every and len(rec.journal) % commit_every == 0:
            # Every record journaled so far was folded and its sends made: commit them all.
            committed.update({p: o for (t, p), o in next_offset.items() if t == topics.JOURNAL})
        o = next_offset[(topics.JOURNAL, partition)]
        next_offset[(topics.JOURNAL, partition)] = o + 1
        rec.journal.append((partition, o, key, JOURNAL_ENCODER.encode(entry)))
        if commit_every:
            folded = fold(records.get(person), entry, cfg, at=o,
                          committed=committed.get(partition, 0))
        else:
            folded = fold(records.get(person), entry, cfg)
        records[person] = folded.record
        for outcome in folded.outcomes:
            kind = cast(str, type(outcome).__struct_config__.tag)  # outcome tags are strings
            emit(out_topic[kind], partition, key, OUTCOME_ENCODER.encode(outcome))
        for req in folded.claims:
            answer = claims.answer(req.kind, req.key, req.person_id)
            journal(req.person_id, partition, AnswerEntry(
                claim_kind=req.kind, claim_key=req.key, person_id=req.person_id,
                event_id=req.event_id, granted=answer.granted, holder=answer.holder))

    for raw in lines:
        try:
            ev = EVENT_DECODER.decode(raw)
        except errors as exc:
            bad = explain_error(raw, exc)
            topic = topics.CARDS
            o = next_offset[(topic, 0)]
            next_offset[(topic, 0)] = o + 1
            dl = dead_letter(bad, f"{topic}/0/{o}", raw, topic=topic, partition=0, offset=o)
            emit(topics.DEADLETTER, 0, None, OUTCOME_ENCODER.encode(dl))
            continue
        person = ev.person_id
        partition = topics.partition_for_key(person.encode(), partitions)
        topic = topics.TOPIC_BY_TYPE[TYPE_NAMES[type(ev)]]
        o = next_offset[(topic, partition)]
        next_offset[(topic, partition)] = o + 1
        journal(person, partition, EventEntry(topic=topic, partition=partition, offset=o,
                                              value=raw))
    rec.table = {p.encode(): RECORD_ENCODER.encode(r) for p, r in records.items()}
    return rec
