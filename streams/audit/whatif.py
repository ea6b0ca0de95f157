"""What-if: decide a recorded history again under other rules, and say who that helps and what
it costs.

Pure. Two sources:

- a recorded history (`History`: an export file or the topics). "Before" is the history as it was
  decided: the journal folded with `streams.core.ledger.fold` and the recorded configuration,
  exactly as replay does (recorded claim answers included). "After" decides the same input
  records with the new configuration through the offline `streams.core.engine.Engine`, in one walk
  over the journal that keeps each partition's recorded order (so each person's events are
  decided in the recorded order). Redelivered entries are recognised by the fold and skipped on
  both sides.
- a plain events file, decided in file order under both configurations (as `simulate` does),
  line by line, by two engines side by side.

**Claims under the new rules.** A changed rule can make a person ask for a payment account or a
reservation place that was never asked for, or stop asking. The what-if decides every claim again
with a fresh claims state, first come first served in its walk order (the same functions as the
pipeline's claims agent, `streams.core.claims`), and keeps the recorded race where it still
applies:

- the walk merges the journal partitions by the events' `occurred_at` (each partition in offset
  order), so a claim that was never asked takes its place by the time of its fact;
- an account held in the recording by H: before anyone else's claim on it is answered, the walk
  first decides H's journal up to H's recorded winning request. If H still asks, H still gets it;
  if H no longer asks, the account goes to the first claimant in walk order;
- with a reservation budget: before the claim of a person who was not granted a place in the
  recording, the walk first decides every recorded grant's request, so the recorded holders keep
  their places where they still ask.

So with the recorded configuration every recorded answer is given again and nothing changes (a
test checks it). The walk never reorders one person's events: if reaching H would mean deciding a
later event of a person whose decision is under way, it stops and the claim is answered first come
first served as it stands (counted as `order_conflicts`). The report counts claims answered as
recorded, answered otherwise, asked only under the new rules, and no longer asked.

Memory is bounded per person: the fold's ledger record and the engine's state, net points per
campaign on each side, and the decisions of one side not yet paired with the other (a request
waiting for its recorded answer). Outcomes are counted as they come, never kept.
"""

from __future__ import annotations

import heapq
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from schemas.codec import DECODE_ERRORS, EVENT_DECODER, decode_event_fast
from schemas.journal import AnswerEntry, EventEntry
from schemas.outcomes import Decision, Grant, Outcome
from streams.audit.export import History, no_cyclic_gc, other_rules, person_of, rules_versions
from streams.core.claims import Answer
from streams.core.config import RulesConfig
from streams.core.engine import Engine
from streams.core.ledger import LedgerRecord, fold
from streams.core.rules import Claim

BEFORE, AFTER = 0, 1
#: A decision that one side never made: the request still waits for a claim's answer at the end
#: of the recorded journal (the fold decides it only when the answer arrives).
UNDECIDED = "undecided"
#: How deep the walk may go to reach recorded claim holders before answering as it stands.
MAX_DEPTH = 64
PROGRESS_EVERY = 4096

ClaimId = tuple[str, str, str, str]  # kind, key, person_id, event_id
Progress = Callable[[int], None]


def _verdict(d: Decision) -> str:
    return "accepted" if d.accepted else str(d.reason)


# --- the comparison: both sides' outcomes, counted as they come ----------------------------------


@dataclass
class Comparison:
    """Net points per person and campaign on each side, and decisions paired per person."""

    points: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    granted: list[Counter[str]] = field(default_factory=lambda: [Counter(), Counter()])
    clawed: list[Counter[str]] = field(default_factory=lambda: [Counter(), Counter()])
    decisions: int = 0
    reasons: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    _unpaired: list[dict[str, deque[tuple[str, str]]]] = field(
        default_factory=lambda: [{}, {}], repr=False)

    def add(self, side: int, outcomes: Iterable[Outcome]) -> None:
        for o in outcomes:
            t = type(o)
            if t is Grant:
                self._grant(side, o)  # type: ignore[arg-type]
            elif t is Decision:
                self._decision(side, o)  # type: ignore[arg-type]

    def _grant(self, side: int, g: Grant) -> None:
        per = self.points.get(g.person_id)
        if per is None:
            per = self.points[g.person_id] = {}
        both = per.get(g.campaign)
        if both is None:
            both = per[g.campaign] = [0, 0]
        both[side] += g.points
        if g.points >= 0:
            self.granted[side][g.campaign] += g.points
        else:
            self.clawed[side][g.campaign] -= g.points

    def _decision(self, side: int, d: Decision) -> None:
        mine = (d.type, _verdict(d))
        other_side = self._unpaired[1 - side]
        waiting = other_side.get(d.person_id)
        if waiting:
            theirs = waiting.popleft()
            if not waiting:
                del other_side[d.person_id]
            before, after = (mine, theirs) if side == BEFORE else (theirs, mine)
            self._pair(before[0], before[1], after[1])
            return
        q = self._unpaired[side].get(d.person_id)
        if q is None:
            q = self._unpaired[side][d.person_id] = deque()
        q.append(mine)

    def _pair(self, type_: str, before: str, after: str) -> None:
        self.decisions += 1
        if before != after:
            self.reasons[(type_, before, after)] += 1

    def finish(self) -> None:
        """Decisions made on one side only (a request still waiting for a recorded answer)."""
        for side in (BEFORE, AFTER):
            for q in self._unpaired[side].values():
                for type_, verdict in q:
                    if side == BEFORE:
                        self._pair(type_, verdict, UNDECIDED)
                    else:
                        self._pair(type_, UNDECIDED, verdict)
            self._unpaired[side].clear()


# --- claims: answered afresh, counted against the recorded (or baseline) answers ------------------


@dataclass
class ClaimCounts:
    same: int = 0  # asked on both sides, same answer
    changed: int = 0  # asked on both sides, another answer
    new: int = 0  # asked only under the new rules
    no_longer_asked: int = 0  # asked only before
    order_conflicts: int = 0  # the walk could not reach the recorded holder first

    def as_dict(self) -> dict[str, int]:
        return {"answered_as_before": self.same, "answered_otherwise": self.changed,
                "asked_only_after": self.new, "asked_only_before": self.no_longer_asked,
                "order_conflicts": self.order_conflicts}


class _ClaimEngine(Engine):
    """The offline engine, with a hook before each claim is answered and each answer kept."""

    def __init__(self, cfg: RulesConfig, before_answer: Callable[[Claim], None] | None = None,
                 after_answer: Callable[[Claim, Answer], None] | None = None):
        super().__init__(cfg)
        self.before_answer = before_answer
        self.after_answer = after_answer
        self.answers: dict[ClaimId, bool] = {}

    def answer_claim(self, claim: Claim) -> Answer:
        if self.before_answer is not None:
            self.before_answer(claim)
        answer = super().answer_claim(claim)
        if self.after_answer is not None:
            self.after_answer(claim, answer)
        self.answers[(claim.kind, claim.key, claim.person_id, claim.event_id)] = answer.granted
        return answer


def _count_claims(before: dict[ClaimId, bool], after: dict[ClaimId, bool],
                  counts: ClaimCounts) -> None:
    for cid, granted in after.items():
        was = before.get(cid)
        if was is None:
            counts.new += 1
        elif was == granted:
            counts.same += 1
        else:
            counts.changed += 1
    counts.no_longer_asked = sum(1 for cid in before if cid not in after)


# --- the report ----------------------------------------------------------------------------------


@dataclass
class WhatIf:
    source: str
    baseline_version: str
    new_version: str
    baseline_from: str = ""
    new_from: str = ""
    inputs: int = 0  # input records decided (events; redeliveries and dead letters excluded)
    dead_letters: int = 0  # lines of an events file that are not events (the same on both sides)
    redelivered: int = 0
    comparison: Comparison = field(default_factory=Comparison)
    claims: ClaimCounts = field(default_factory=ClaimCounts)
    top: int = 10
    # Rules version -> how many published outcomes carry it (a recorded history; {}: a file),
    # and which outcomes were counted.
    published_versions: dict[str, int] = field(default_factory=dict)
    versions_of: str = "the published outcomes"

    # The (person, campaign) pairs whose net points differ, largest change first.
    def persons(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [
            {"person_id": person, "campaign": campaign, "before": b, "after": a}
            for person, per in self.comparison.points.items()
            for campaign, (b, a) in per.items() if a != b
        ]
        out.sort(key=lambda r: (-abs(r["after"] - r["before"]), r["person_id"], r["campaign"]))
        return out

    def most_affected(self, persons: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        by_person: dict[str, dict[str, Any]] = {}
        for r in persons if persons is not None else self.persons():
            p = by_person.setdefault(r["person_id"], {"person_id": r["person_id"], "before": 0,
                                                      "after": 0, "campaigns": {}})
            p["before"] += r["before"]
            p["after"] += r["after"]
            p["campaigns"][r["campaign"]] = r["after"] - r["before"]
        ranked = sorted(by_person.values(),
                        key=lambda p: (-sum(abs(d) for d in p["campaigns"].values()),
                                       p["person_id"]))
        return ranked[: self.top]

    def campaigns(self, persons: list[dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
        c = self.comparison
        rows = persons if persons is not None else self.persons()
        names = sorted(set(c.granted[0]) | set(c.granted[1]) | set(c.clawed[0]) | set(c.clawed[1])
                       | {r["campaign"] for r in rows})
        out: dict[str, dict[str, Any]] = {}
        for name in names:
            mine = [r for r in rows if r["campaign"] == name]
            sides = {}
            for side, label in ((BEFORE, "before"), (AFTER, "after")):
                g, cb = c.granted[side][name], c.clawed[side][name]
                sides[label] = {"granted": g, "clawed_back": cb, "net": g - cb}
            out[name] = {
                "people_changed": len(mine),
                "people_gaining": sum(1 for r in mine if r["after"] > r["before"]),
                "people_losing": sum(1 for r in mine if r["after"] < r["before"]),
                **sides,
                "net_change": sides["after"]["net"] - sides["before"]["net"],
            }
        return out

    def as_dict(self) -> dict[str, Any]:
        persons = self.persons()
        campaigns = self.campaigns(persons)
        totals: dict[str, Any] = {}
        for label in ("before", "after"):
            totals[label] = {k: sum(c[label][k] for c in campaigns.values())
                             for k in ("granted", "clawed_back", "net")}
        totals["net_change"] = totals["after"]["net"] - totals["before"]["net"]
        totals["people_changed"] = len({r["person_id"] for r in persons})
        return {
            "source": self.source,
            "baseline": {"rules_version": self.baseline_version, "config": self.baseline_from},
            "published_rules_versions": self.published_versions,
            "new": {"rules_version": self.new_version, "config": self.new_from},
            "inputs_decided": self.inputs,
            "redelivered_entries": self.redelivered,
            "dead_letters": self.dead_letters,
            "totals": totals,
            "campaigns": campaigns,
            "decisions_compared": self.comparison.decisions,
            "reason_changes": [
                {"type": t, "from": b, "to": a, "count": n}
                for (t, b, a), n in sorted(self.comparison.reasons.items(),
                                           key=lambda x: (-x[1], x[0]))
            ],
            "claims": self.claims.as_dict(),
            "most_affected": self.most_affected(persons),
            "persons": persons,
        }

    def render(self) -> str:
        d = self.as_dict()
        lines = [
            f"== Mynapoint what-if: {self.baseline_version} -> {self.new_version} ==",
            f"source: {self.source}",
            f"baseline rules: {self.baseline_version} ({self.baseline_from or '-'})",
            f"new rules:      {self.new_version} ({self.new_from or '-'})",
            f"inputs decided: {self.inputs:,}"
            + (f"   redelivered entries skipped: {self.redelivered:,}" if self.redelivered else "")
            + (f"   dead letters (not events): {self.dead_letters:,}" if self.dead_letters else ""),
        ]
        if self.baseline_version == self.new_version:
            lines.append("note: the new configuration is the baseline's (same rules version)")
        shown = other_rules(self.published_versions, self.baseline_version)
        if shown:
            lines.append(
                f"note: {self.versions_of} carry rules version(s) {shown}, not the "
                f"baseline's {self.baseline_version}: \"before\" is not what the pipeline "
                "decided. Pass the configuration it ran with as --baseline")
        t = d["totals"]
        lines += ["", f"people whose points change: {t['people_changed']:,}", "",
                  "points, net after clawbacks (granted / clawed back / net):",
                  f"  {'':<20} {'before':>32}   {'after':>32}   {'change':>12}"]

        def row(name: str, c: dict[str, Any], extra: str = "") -> str:
            b, a = c["before"], c["after"]
            return (f"  {name:<20} {b['granted']:>12,} {b['clawed_back']:>9,} {b['net']:>9,}   "
                    f"{a['granted']:>12,} {a['clawed_back']:>9,} {a['net']:>9,}   "
                    f"{a['net'] - b['net']:>+12,}{extra}")

        lines.append(row("all campaigns", t))
        for name, c in d["campaigns"].items():
            lines.append(row(name, c, f"   people {c['people_changed']:,} (+{c['people_gaining']:,}"
                                      f" / -{c['people_losing']:,})"))
        lines += ["", f"decisions whose reason changes: {sum(r['count'] for r in d['reason_changes']):,}"
                      f" of {d['decisions_compared']:,}"]
        for r in d["reason_changes"]:
            lines.append(f"  {r['type']:<22} {r['from']:>26} -> {r['to']:<26} {r['count']:>9,}")
        cl = d["claims"]
        lines += ["", "cross-person claims (payment accounts, reservation budget), answered afresh:",
                  f"  answered as before {cl['answered_as_before']:,}, otherwise "
                  f"{cl['answered_otherwise']:,}; asked only after {cl['asked_only_after']:,}, "
                  f"only before {cl['asked_only_before']:,}"]
        if cl["order_conflicts"]:
            lines.append(f"  answered in walk order (recorded holder not reachable first): "
                         f"{cl['order_conflicts']:,}")
        lines += ["", f"most affected people (top {self.top}):"]
        if not d["most_affected"]:
            lines.append("  none")
        for p in d["most_affected"]:
            per = ", ".join(f"{k} {v:+,}" for k, v in sorted(p["campaigns"].items()))
            lines.append(f"  {p['person_id']:<16} {p['before']:>9,} -> {p['after']:<9,} ({per})")
        return "\n".join(lines)


# --- over a recorded history --------------------------------------------------------------------


class _Recorded:
    """What the journal's answer entries say: every answer, and the anchors of the recorded race
    (where, in its partition, each account holder's and each reservation's grant was answered)."""

    def __init__(self, history: History):
        self.answers: dict[ClaimId, bool] = {}
        self.account_winner: dict[str, tuple[str, int, int]] = {}  # key -> (person, part, index)
        self.reservation_last: dict[int, int] = {}  # partition -> index of its last grant
        self.reserved: set[str] = set()
        for p, entries in history.journal.items():
            for i, (_offset, _key, entry) in enumerate(entries):
                if type(entry) is not AnswerEntry:
                    continue
                cid = (entry.claim_kind, entry.claim_key, entry.person_id, entry.event_id)
                self.answers.setdefault(cid, entry.granted)
                if not entry.granted:
                    continue
                if entry.claim_kind == "account":
                    self.account_winner.setdefault(entry.claim_key, (entry.person_id, p, i))
                else:
                    self.reserved.add(entry.person_id)
                    self.reservation_last[p] = i


class _Walk:
    def __init__(self, history: History, baseline: RulesConfig, new: RulesConfig,
                 result: WhatIf, progress: Progress | None):
        self.journal = {p: history.journal[p] for p in sorted(history.journal)}
        self.cursor = dict.fromkeys(self.journal, 0)
        self.baseline = baseline
        self.recorded = _Recorded(history)
        self.engine = _ClaimEngine(new, self._before_answer, self._after_answer)
        # Recorded place holders that already have their place under the new rules.
        self.places_taken = 0
        self.counted: set[str] = set()
        self.records: dict[str, LedgerRecord] = {}
        self.result = result
        self.busy: set[str] = set()
        self.depth = 0
        self.walked = 0
        self.progress = progress
        self.reservations_pending = bool(self.recorded.reservation_last)

    # One journal entry: folded for "before", decided by the engine for "after".
    def _step(self, p: int) -> None:
        entries = self.journal[p]
        i = self.cursor[p]
        self.cursor[p] = i + 1
        _offset, key, entry = entries[i]
        person = key if key is not None else person_of(None, entry)
        folded = fold(self.records.get(person), entry, self.baseline)
        self.records[person] = folded.record
        self.walked += 1
        if self.progress is not None and self.walked % PROGRESS_EVERY == 0:
            self.progress(self.walked)
        if folded.repeat:
            self.result.redelivered += 1
            return
        comparison = self.result.comparison
        if folded.outcomes:
            comparison.add(BEFORE, folded.outcomes)
        if type(entry) is EventEntry:
            self.result.inputs += 1
            ev = decode_event_fast(entry.value)
            self.busy.add(ev.person_id)
            try:
                outcomes = self.engine.process(ev)
            finally:
                self.busy.discard(ev.person_id)
            comparison.add(AFTER, outcomes)

    def _key(self, p: int) -> float:
        """The merge key of a partition's next entry: its event's time; answers go at once."""
        _o, _k, entry = self.journal[p][self.cursor[p]]
        if type(entry) is EventEntry:
            return decode_event_fast(entry.value).occurred_at.timestamp()
        return float("-inf")

    def run(self) -> None:
        heap = [(self._key(p), p, 0) for p, entries in self.journal.items() if entries]
        heapq.heapify(heap)
        while heap:
            _k, p, i = heapq.heappop(heap)
            n = len(self.journal[p])
            if i == self.cursor[p]:
                self._step(p)
            # else: the partition was walked ahead to reach a recorded claim holder
            if self.cursor[p] < n:
                heapq.heappush(heap, (self._key(p), p, self.cursor[p]))
        if self.progress is not None:
            self.progress(self.walked)

    def _walk_to(self, p: int, index: int) -> bool:
        """Walks partition p up to and including `index`, unless that means deciding an event of
        a person whose decision is under way. True when reached."""
        entries = self.journal[p]
        while self.cursor[p] <= index:
            _o, key, entry = entries[self.cursor[p]]
            if person_of(key, entry) in self.busy:
                return False
            self._step(p)
        return True

    def _after_answer(self, claim: Claim, answer: Answer) -> None:
        if (claim.kind != "account" and answer.granted and claim.person_id in self.recorded.reserved
                and claim.person_id not in self.counted):
            self.counted.add(claim.person_id)
            self.places_taken += 1

    def _before_answer(self, claim: Claim) -> None:
        """Keeps the recorded race where it still applies (see the module's docstring)."""
        if self.depth >= MAX_DEPTH:
            self.result.claims.order_conflicts += 1
            return
        self.depth += 1
        try:
            claims = self.engine.claims
            if claim.kind == "account":
                winner = self.recorded.account_winner.get(claim.key)
                if (winner is not None and winner[0] != claim.person_id
                        and claim.key not in claims.account_holders):
                    if not self._walk_to(winner[1], winner[2]):
                        self.result.claims.order_conflicts += 1
            elif (self.reservations_pending and claims.budget is not None
                  and claim.person_id not in self.recorded.reserved
                  and claim.person_id not in claims.reserved
                  # the budget is contested only if the recorded holders still to come can fill it
                  and len(claims.reserved) + len(self.recorded.reserved) - self.places_taken
                  >= claims.budget):
                reached = True
                for p, index in self.recorded.reservation_last.items():
                    reached = self._walk_to(p, index) and reached
                if reached:
                    self.reservations_pending = False
                else:
                    self.result.claims.order_conflicts += 1
        finally:
            self.depth -= 1


def whatif_history(history: History, baseline: RulesConfig, new: RulesConfig, *,
                   progress: Progress | None = None, top: int = 10) -> WhatIf:
    """Decides a recorded history again under `new`; `baseline` is the recorded configuration."""
    result = WhatIf(source=history.source, baseline_version=baseline.version,
                    new_version=new.version, top=top,
                    published_versions=rules_versions(history.outcomes))
    with no_cyclic_gc():
        walk = _Walk(history, baseline, new, result, progress)
        walk.run()
    result.comparison.finish()
    _count_claims(walk.recorded.answers, walk.engine.answers, result.claims)
    return result


# --- over an events file --------------------------------------------------------------------------


def whatif_events(lines: Iterable[bytes], baseline: RulesConfig, new: RulesConfig, *,
                  source: str = "<events>", progress: Progress | None = None,
                  top: int = 10) -> WhatIf:
    """Decides an events file in file order under both configurations, side by side."""
    result = WhatIf(source=source, baseline_version=baseline.version, new_version=new.version,
                    top=top)
    before, after = _ClaimEngine(baseline), _ClaimEngine(new)
    comparison = result.comparison
    decode = EVENT_DECODER.decode
    n = 0
    with no_cyclic_gc():
        for raw in lines:
            n += 1
            if progress is not None and n % PROGRESS_EVERY == 0:
                progress(n)
            try:
                ev = decode(raw)
            except DECODE_ERRORS:
                result.dead_letters += 1  # the same dead letter under any rules
                continue
            result.inputs += 1
            comparison.add(BEFORE, before.process(ev))
            comparison.add(AFTER, after.process(ev))
    if progress is not None:
        progress(n)
    comparison.finish()
    _count_claims(before.answers, after.answers, result.claims)
    return result

