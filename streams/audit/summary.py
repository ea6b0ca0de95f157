"""A readable summary of outcomes: decisions by type and reason, points by campaign."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from schemas.outcomes import Alert, DeadLetter, Decision, Grant, Outcome
from streams.core.config import RulesConfig


class Summary:
    def __init__(self) -> None:
        self.decisions: Counter[tuple[str, str]] = Counter()
        self.accepted = 0
        self.rejected = 0
        self.points: Counter[str] = Counter()
        self.clawed_back: Counter[str] = Counter()
        self.alerts: Counter[str] = Counter()
        self.dead_letters: Counter[str] = Counter()
        self.people: set[str] = set()

    def observe(self, outcomes: Iterable[Outcome]) -> None:
        for o in outcomes:
            if type(o) is Decision:
                self.people.add(o.person_id)
                if o.accepted:
                    self.accepted += 1
                    self.decisions[(o.type, "accepted")] += 1
                else:
                    self.rejected += 1
                    self.decisions[(o.type, o.reason or "")] += 1
            elif type(o) is Grant:
                if o.points >= 0:
                    self.points[o.campaign] += o.points
                else:
                    self.clawed_back[o.campaign] -= o.points
            elif type(o) is Alert:
                self.alerts[o.code] += 1
            elif type(o) is DeadLetter:
                self.dead_letters[o.reason] += 1

    def as_dict(self) -> dict[str, object]:
        return {
            "people": len(self.people),
            "decisions": self.accepted + self.rejected,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "by_type_and_reason": {f"{t} {r}": n for (t, r), n in sorted(self.decisions.items())},
            "points_by_campaign": dict(sorted(self.points.items())),
            "clawed_back_by_campaign": dict(sorted(self.clawed_back.items())),
            "alerts": dict(sorted(self.alerts.items())),
            "dead_letters": dict(sorted(self.dead_letters.items())),
        }

    def render(self, cfg: RulesConfig | None = None) -> str:
        total = self.accepted + self.rejected
        lines = [
            "",
            "== Mynapoint summary " + (f"(rules {cfg.version}) " if cfg else "") + "==",
            f"people: {len(self.people):,}   decisions: {total:,}   accepted: {self.accepted:,}"
            f"   rejected: {self.rejected:,}   dead letters: {sum(self.dead_letters.values()):,}",
            "",
            "decisions by type and reason:",
        ]
        by_type: dict[str, list[tuple[str, int]]] = {}
        for (t, r), n in self.decisions.items():
            by_type.setdefault(t, []).append((r, n))
        for t in sorted(by_type):
            rows = sorted(by_type[t], key=lambda x: (x[0] != "accepted", -x[1], x[0]))
            lines.append(f"  {t}")
            for r, n in rows:
                lines.append(f"    {r:<28} {n:>10,}")
        lines.append("")
        lines.append("points by campaign (granted / clawed back / net):")
        for c in sorted(set(self.points) | set(self.clawed_back)):
            g, b = self.points[c], self.clawed_back[c]
            lines.append(f"  {c:<20} {g:>14,} {b:>12,} {g - b:>14,}")
        if self.alerts:
            lines.append("")
            lines.append("alerts:")
            for code, n in sorted(self.alerts.items()):
                lines.append(f"  {code:<28} {n:>10,}")
        if self.dead_letters:
            lines.append("")
            lines.append("dead letters by reason:")
            for code, n in sorted(self.dead_letters.items()):
                lines.append(f"  {code:<28} {n:>10,}")
        return "\n".join(lines)
