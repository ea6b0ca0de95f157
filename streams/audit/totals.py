"""`mynapoint audit`: what the outcomes add up to, for an auditor.

Pure. Takes outcome objects (from the output topics, an export file, or `simulate`'s output) and
totals them: points granted, clawed back and net, by campaign and by payment service; decisions by
type and reason; every `account_shared` alert with both people (the one refused and the one who
holds the account: the signature of the 2023 mis-linking incidents, 誤紐付け); dead letters by
reason. Exact repeats (same `outcome_id`, same content) count once: a redelivery produces them, and
so does a repeated input that gets the identical decision (the second and third copy of an
`event_id` are both `duplicate_event` with one id), so decision counts are of distinct decisions;
grants and alerts are never shared that way, so point totals are exact. An id published with two
different contents is listed as a conflict and counted as first published.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from streams.core.reasons import ALERT_ACCOUNT_SHARED


@dataclass
class Audit:
    outcomes_read: int = 0
    exact_repeats: int = 0
    unreadable: int = 0
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    people: set[str] = field(default_factory=set)
    granted_by_campaign: Counter[str] = field(default_factory=Counter)
    clawed_back_by_campaign: Counter[str] = field(default_factory=Counter)
    granted_by_service: Counter[str] = field(default_factory=Counter)
    clawed_back_by_service: Counter[str] = field(default_factory=Counter)
    grants: int = 0
    decisions: Counter[tuple[str, str]] = field(default_factory=Counter)
    accepted: int = 0
    rejected: int = 0
    alerts: Counter[str] = field(default_factory=Counter)
    shared_accounts: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: Counter[str] = field(default_factory=Counter)
    rules_versions: Counter[str] = field(default_factory=Counter)
    _seen: dict[str, Mapping[str, Any]] = field(default_factory=dict, repr=False)

    def observe(self, o: Mapping[str, Any] | None) -> None:
        self.outcomes_read += 1
        if not isinstance(o, Mapping):
            self.unreadable += 1
            return
        oid = o.get("outcome_id")
        if isinstance(oid, str):
            first = self._seen.get(oid)
            if first is not None:
                if first == o:
                    self.exact_repeats += 1
                else:
                    self.conflicts.append({"outcome_id": oid, "first": dict(first),
                                           "other": dict(o)})
                return
            self._seen[oid] = o
        kind = o.get("kind")
        person = o.get("person_id")
        if isinstance(person, str) and kind != "dead_letter":
            self.people.add(person)
        rv = o.get("rules_version")
        if isinstance(rv, str):
            self.rules_versions[rv] += 1
        if kind == "decision":
            if o.get("accepted"):
                self.accepted += 1
                self.decisions[(str(o.get("type")), "accepted")] += 1
            else:
                self.rejected += 1
                self.decisions[(str(o.get("type")), str(o.get("reason")))] += 1
        elif kind == "grant":
            self.grants += 1
            points = o.get("points")
            if not isinstance(points, int):
                self.unreadable += 1
                return
            campaign, service = str(o.get("campaign")), str(o.get("service_id"))
            if points >= 0:
                self.granted_by_campaign[campaign] += points
                self.granted_by_service[service] += points
            else:
                self.clawed_back_by_campaign[campaign] -= points
                self.clawed_back_by_service[service] -= points
        elif kind == "alert":
            code = str(o.get("code"))
            self.alerts[code] += 1
            if code == ALERT_ACCOUNT_SHARED:
                self.shared_accounts.append({
                    "person_id": person,
                    "linked_person_id": o.get("linked_person_id"),
                    "service_id": o.get("service_id"),
                    "service_account": o.get("service_account"),
                    "event_id": o.get("event_id"),
                    "outcome_id": oid,
                })
        elif kind == "dead_letter":
            self.dead_letters[str(o.get("reason") or "?")] += 1
        else:
            self.unreadable += 1

    def observe_all(self, outcomes: Iterable[Mapping[str, Any] | None]) -> Audit:
        for o in outcomes:
            self.observe(o)
        return self

    @staticmethod
    def _totals(granted: Counter[str], clawed: Counter[str]) -> dict[str, dict[str, int]]:
        return {
            k: {"granted": granted[k], "clawed_back": clawed[k], "net": granted[k] - clawed[k]}
            for k in sorted(set(granted) | set(clawed))
        }

    def as_dict(self) -> dict[str, Any]:
        by_campaign = self._totals(self.granted_by_campaign, self.clawed_back_by_campaign)
        granted = sum(self.granted_by_campaign.values())
        clawed = sum(self.clawed_back_by_campaign.values())
        by_type: dict[str, dict[str, int]] = {}
        for (t, r), n in sorted(self.decisions.items()):
            by_type.setdefault(t, {})[r] = n
        return {
            "outcomes_read": self.outcomes_read,
            "distinct_outcomes": len(self._seen),
            "exact_repeats": self.exact_repeats,
            "unreadable": self.unreadable,
            "conflicting_ids": self.conflicts,
            "people": len(self.people),
            "rules_versions": dict(sorted(self.rules_versions.items())),
            "points": {"granted": granted, "clawed_back": clawed, "net": granted - clawed,
                       "grant_outcomes": self.grants},
            "points_by_campaign": by_campaign,
            "points_by_service": self._totals(self.granted_by_service, self.clawed_back_by_service),
            "decisions": {"total": self.accepted + self.rejected, "accepted": self.accepted,
                          "rejected": self.rejected, "by_type_and_reason": by_type},
            "alerts": dict(sorted(self.alerts.items())),
            "account_shared": sorted(
                self.shared_accounts,
                key=lambda a: (str(a["service_id"]), str(a["service_account"]),
                               str(a["person_id"]))),
            "dead_letters_by_reason": dict(sorted(self.dead_letters.items())),
        }

    def render(self) -> str:
        d = self.as_dict()
        lines = [
            "== Mynapoint audit ==",
            f"outcomes read: {d['outcomes_read']:,} ({d['distinct_outcomes']:,} distinct ids; "
            f"{d['exact_repeats']:,} exact repeats counted once: redeliveries, or identical "
            f"decisions on repeated inputs; {d['unreadable']:,} unreadable)",
            f"people: {d['people']:,}   rules versions: "
            + (", ".join(f"{v} ({n:,})" for v, n in d["rules_versions"].items()) or "-"),
        ]
        if self.conflicts:
            lines.append(f"CONFLICTS: {len(self.conflicts):,} outcome id(s) published with different "
                         "contents (counted as first published; run `mynapoint replay`):")
            for c in self.conflicts[:10]:
                lines.append(f"  {c['outcome_id']}")
        p = d["points"]
        lines += ["", "points (granted / clawed back / net):",
                  f"  {'all campaigns':<24} {p['granted']:>14,} {p['clawed_back']:>12,} "
                  f"{p['net']:>14,}", "  by campaign:"]
        for name, t in d["points_by_campaign"].items():
            lines.append(f"    {name:<22} {t['granted']:>14,} {t['clawed_back']:>12,} {t['net']:>14,}")
        lines.append("  by service:")
        for name, t in d["points_by_service"].items():
            lines.append(f"    {name:<22} {t['granted']:>14,} {t['clawed_back']:>12,} {t['net']:>14,}")
        dec = d["decisions"]
        lines += ["", f"decisions: {dec['total']:,} (accepted {dec['accepted']:,}, rejected "
                      f"{dec['rejected']:,})"]
        for t, reasons in dec["by_type_and_reason"].items():
            lines.append(f"  {t}")
            for r, n in sorted(reasons.items(), key=lambda x: (x[0] != "accepted", -x[1], x[0])):
                lines.append(f"    {r:<28} {n:>10,}")
        lines += ["", "alerts:"]
        if not d["alerts"]:
            lines.append("  none")
        for code, n in d["alerts"].items():
            lines.append(f"  {code:<28} {n:>10,}")
        if d["account_shared"]:
            lines += ["", "account_shared (誤紐付けの疑い): refused person -> person holding the "
                          "account, service, account, event:"]
            for a in d["account_shared"]:
                lines.append(f"  {a['person_id']} -> {a['linked_person_id']}  {a['service_id']}  "
                             f"{a['service_account']}  {a['event_id']}")
        lines += ["", "dead letters by reason:"]
        if not d["dead_letters_by_reason"]:
            lines.append("  none")
        for r, n in d["dead_letters_by_reason"].items():
            lines.append(f"  {r:<28} {n:>10,}")
        return "\n".join(lines)
