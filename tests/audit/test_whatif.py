"""What-if (streams/audit/whatif.py, `mynapoint whatif`): histories whose answer is known by hand.

Each case is decided twice: as an events file (`whatif_events`, file order) and as a recorded
history (`record_offline`, the in-memory stand-in for the pipeline, then `whatif_history` over its
journal with its recorded claim answers); both must give the hand-computed answer. The recorded
history is also walked with its journal in records of several entries, as intake journals it:
the same entries, the same answer.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.audit.replay import record_offline
from streams.audit.whatif import whatif_events, whatif_history
from streams.core.config import RulesConfig, build_config
from tests.audit.journals import batched
from tests.builders import card, link, pay, renew, reserve, to_lines
from tests.core.test_properties import CFG as PROPERTY_CFG
from tests.core.test_properties import LINES

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS = build_config({})
ONE_HOUR = build_config({"renewal_wait": [{"from": dt.date(2020, 1, 1), "hours": 1}]})


def _both(events: list[dict[str, Any]], old: RulesConfig, new: RulesConfig) -> dict[str, Any]:
    """The what-if over the events file and over the recorded history; they must agree."""
    lines = to_lines(events)
    by_file = whatif_events(lines, old, new).as_dict()
    recorded = record_offline(lines, old)
    by_journal = whatif_history(recorded.history(), old, new).as_dict()
    by_batches = whatif_history(batched(recorded, 4).history(), old, new).as_dict()
    for key in ("totals", "campaigns", "reason_changes", "persons", "claims", "inputs_decided"):
        assert by_journal[key] == by_file[key], key
        assert by_batches[key] == by_journal[key], key
    return by_file


def _reasons(d: dict[str, Any]) -> dict[tuple[str, str, str], int]:
    return {(r["type"], r["from"], r["to"]): r["count"] for r in d["reason_changes"]}


def _renewed_then_reserved(person: str, reserve_at: str) -> list[dict[str, Any]]:
    """A card, a renewal on 2021-06-01 10:00 JST, a reservation, a phase1 link and a payment of
    4,000 yen (1,000 points at 25%)."""
    return [
        card(person, serial="C1"),
        renew(person, "2021-06-01T10:00:00+09:00"),
        reserve(person, reserve_at),
        link(person, "2021-06-02T10:00:00+09:00", account=f"acct-{person}"),
        pay(person, "2021-06-10T10:00:00+09:00", txn=f"T-{person}", amount=4000,
            account=f"acct-{person}"),
    ]


def test_24_hour_wait_to_1_hour_helps_who_reserved_inside_the_day() -> None:
    # P1 reserved 2 hours after renewing: refused under 24 h, accepted under 1 h, and so are its
    # link and payment. P2 reserved 2 days later: the same under both.
    events = [*_renewed_then_reserved("P1", "2021-06-01T12:00:00+09:00"),
              *_renewed_then_reserved("P2", "2021-06-03T12:00:00+09:00")]
    d = _both(events, DEFAULTS, ONE_HOUR)
    assert d["persons"] == [{"person_id": "P1", "campaign": "phase1", "before": 0, "after": 1000}]
    assert _reasons(d) == {
        ("mykey.reserved", "renewal_wait", "accepted"): 1,
        ("service.linked", "no_mykey", "accepted"): 1,
        ("payment.recorded", "not_linked_service", "accepted"): 1,
    }
    assert d["campaigns"]["phase1"]["before"]["net"] == 1000  # P2's
    assert d["campaigns"]["phase1"]["after"]["net"] == 2000
    assert d["campaigns"]["phase1"]["people_gaining"] == 1
    assert d["totals"]["net_change"] == 1000
    assert d["most_affected"][0]["person_id"] == "P1"
    # P1's link asks for its account only under the new rules.
    assert d["claims"]["asked_only_after"] == 1
    assert d["claims"]["answered_otherwise"] == 0


def test_a_lower_cap_costs_the_big_spenders_only() -> None:
    lower = build_config({"campaigns": {"phase1": {"cap": 3000}}})
    events = [
        card("P1"), reserve("P1"), link("P1", account="a1"),
        pay("P1", txn="T1", amount=24_000, account="a1"),  # 6,000 -> capped: 5,000 / 3,000
        pay("P1", "2020-09-11T10:00:00+09:00", txn="T2", amount=1000, account="a1"),
        card("P2"), reserve("P2"), link("P2", account="a2"),
        pay("P2", txn="T3", amount=8000, account="a2"),  # 2,000 under both caps
    ]
    d = _both(events, DEFAULTS, lower)
    assert d["persons"] == [{"person_id": "P1", "campaign": "phase1", "before": 5000,
                             "after": 3000}]
    assert _reasons(d) == {}  # T2 is cap_reached under both
    assert d["campaigns"]["phase1"]["before"]["granted"] == 7000
    assert d["campaigns"]["phase1"]["after"]["granted"] == 5000
    assert d["campaigns"]["phase1"]["people_losing"] == 1


def test_a_later_deadline_lets_the_late_link_earn_points() -> None:
    # phase1 links closed 2021-12-31; extended to 2022-03-31 (as seed 003's extension did).
    later = build_config({"campaigns": {"phase1": {"link_until": dt.date(2022, 3, 31)}}})
    events = [
        card("P1"), reserve("P1"),
        link("P1", "2022-01-15T10:00:00+09:00", account="a1"),
        pay("P1", "2022-01-20T10:00:00+09:00", txn="T1", amount=8000, account="a1"),
    ]
    d = _both(events, DEFAULTS, later)
    assert d["persons"] == [{"person_id": "P1", "campaign": "phase1", "before": 0, "after": 2000}]
    assert _reasons(d) == {
        ("service.linked", "outside_window", "accepted"): 1,
        ("payment.recorded", "not_linked_service", "accepted"): 1,
    }


def test_an_account_whose_recorded_holder_no_longer_asks_goes_to_the_next_claimant() -> None:
    # Recorded (file order): H links account X (2021-12-23) and holds it; P's link of X comes later
    # in the file, though its fact is earlier (2021-12-21, a late event), and is refused
    # account_linked_elsewhere. With phase1 links closing 2021-12-22, H's link is outside the
    # window and never asks for X: P's link is the first claim on X and gets it.
    earlier = build_config({"campaigns": {"phase1": {"link_until": dt.date(2021, 12, 22)}}})
    events = [
        card("H"), reserve("H"), card("P"), reserve("P"),
        link("H", "2021-12-23T10:00:00+09:00", account="X"),
        pay("H", "2021-12-24T10:00:00+09:00", txn="TH", amount=4000, account="X"),
        link("P", "2021-12-21T10:00:00+09:00", account="X"),
        pay("P", "2021-12-26T10:00:00+09:00", txn="TP", amount=8000, account="X"),
    ]
    d = _both(events, DEFAULTS, earlier)
    assert _reasons(d) == {
        ("service.linked", "accepted", "outside_window"): 1,
        ("payment.recorded", "accepted", "not_linked_service"): 1,
        ("service.linked", "account_linked_elsewhere", "accepted"): 1,
        ("payment.recorded", "not_linked_service", "accepted"): 1,
    }
    assert d["persons"] == [{"person_id": "P", "campaign": "phase1", "before": 0, "after": 2000},
                            {"person_id": "H", "campaign": "phase1", "before": 1000, "after": 0}]
    # P's claim on X is answered otherwise (granted now); H's is no longer asked.
    assert d["claims"]["answered_otherwise"] == 1
    assert d["claims"]["asked_only_before"] == 1


def test_the_recorded_race_is_kept_when_the_walk_meets_the_loser_first() -> None:
    # Recorded (file order): H links X first; P's link of X, whose fact is earlier, comes later in
    # the file (a late event) and is refused. The what-if walks by time, so it meets P's link
    # first: it must decide H's journal first and keep the recorded holder.
    events = [
        card("H"), reserve("H"), card("P"), reserve("P"),
        link("H", "2021-12-23T10:00:00+09:00", account="X"),
        link("P", "2021-12-21T10:00:00+09:00", account="X"),
    ]
    lines = to_lines(events)
    recorded = record_offline(lines, DEFAULTS)
    d = whatif_history(recorded.history(), DEFAULTS, DEFAULTS).as_dict()
    assert d["persons"] == [] and d["reason_changes"] == []
    assert d["claims"]["answered_otherwise"] == 0 and d["claims"]["order_conflicts"] == 0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(LINES, st.integers(1, 4))
def test_the_recorded_configuration_changes_nothing(lines: list[bytes], partitions: int) -> None:
    # Random events in random time order over 3 people sharing 2 accounts and a budget of 2:
    # the recorded races (by file order) cross partitions, and the walk goes by time.
    for cfg in (PROPERTY_CFG, DEFAULTS):
        recorded = record_offline(lines, cfg, partitions=partitions)
        for d in (whatif_history(recorded.history(), cfg, cfg).as_dict(),
                  whatif_events(lines, cfg, cfg).as_dict()):
            assert d["persons"] == []
            assert d["reason_changes"] == []
            assert d["totals"]["net_change"] == 0
            assert d["claims"]["answered_otherwise"] == 0
            assert d["claims"]["asked_only_after"] == d["claims"]["asked_only_before"] == 0


def test_cli_whatif_json_over_an_export(tmp_path: Path) -> None:
    events = [*_renewed_then_reserved("P1", "2021-06-01T12:00:00+09:00"),
              *_renewed_then_reserved("P2", "2021-06-03T12:00:00+09:00")]
    export = tmp_path / "history.jsonl"
    with open(export, "wb") as out:
        record_offline(to_lines(events), DEFAULTS).write_export(out, DEFAULTS)
    new = tmp_path / "new.toml"
    new.write_text('[[renewal_wait]]\nfrom = 2020-01-01\nhours = 1\n', encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "whatif", "--file", str(export), "--config", str(new),
         "--json"],
        cwd=ROOT, capture_output=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["persons"] == [{"person_id": "P1", "campaign": "phase1", "before": 0, "after": 1000}]
    assert d["totals"]["before"]["net"] == 1000 and d["totals"]["after"]["net"] == 2000
    assert d["baseline"]["rules_version"] == DEFAULTS.version
    assert d["new"]["rules_version"] == ONE_HOUR.version
    assert proc.stderr == b""  # no bar off a terminal

    events_file = tmp_path / "events.jsonl"
    events_file.write_bytes(b"\n".join(to_lines(events)) + b"\n")
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "whatif", "--events", str(events_file),
         "--config", str(new), "--json"],
        cwd=ROOT, capture_output=True, check=False, env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["persons"] == d["persons"]


def test_cli_whatif_needs_a_source_and_a_readable_config(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "whatif", "--config", str(tmp_path / "none.toml"),
         "--events", "x"], cwd=ROOT, capture_output=True, check=False)
    assert proc.returncode == 2
    assert b"does not exist" in proc.stderr and b"Traceback" not in proc.stderr


def test_a_baseline_other_than_the_rules_the_history_was_decided_under_is_pointed_out() -> None:
    # Seen with `mynapoint dev` (demo rules) and `whatif --bootstrap` without --baseline: the
    # baseline was RULES.md's defaults, so "before" was not what the pipeline had decided, and
    # the report showed every demo-catalog link and payment as a gain.
    lines = to_lines(_renewed_then_reserved("P1", "2021-06-01T12:00:00+09:00"))
    history = record_offline(lines, ONE_HOUR).history()  # decided under ONE_HOUR
    wrong = whatif_history(history, DEFAULTS, ONE_HOUR)
    assert wrong.as_dict()["published_rules_versions"] == {ONE_HOUR.version: len(history.outcomes)}
    said = wrong.render()
    assert (f"note: the published outcomes carry rules version(s) {ONE_HOUR.version} "
            f"({len(history.outcomes)}), not the baseline's {DEFAULTS.version}") in said
    assert "Pass the configuration it ran with as --baseline" in said
    right = whatif_history(history, ONE_HOUR, DEFAULTS)
    assert "--baseline" not in right.render()
