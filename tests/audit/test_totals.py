"""`mynapoint audit` (streams/audit/totals.py): totals by campaign and service, decisions by reason,
shared-account alerts with both people, dead letters by reason."""

from __future__ import annotations

import io
import json
from pathlib import Path

import msgspec
import pytest

from cli.main import main
from devtools.demo import generate
from schemas.codec import OUTCOME_ENCODER
from streams.audit.replay import record_offline
from streams.audit.simulate import run
from streams.audit.summary import Summary
from streams.audit.totals import Audit
from streams.core.config import load_config
from streams.core.engine import Engine

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "streams" / "data" / "demo.toml"
CFG = load_config(DEMO)


def _decision(eid, person, type_, reason=None):
    return {"kind": "decision", "event_id": eid, "person_id": person, "type": type_,
            "accepted": reason is None, "reason": reason, "outcome_id": f"{eid}-{reason}",
            "rules_version": "r-x"}


def _grant(eid, person, campaign, service, points):
    return {"kind": "grant", "event_id": eid, "person_id": person, "campaign": campaign,
            "service_id": service, "points": points, "outcome_id": f"{eid}-g",
            "rules_version": "r-x"}


OUTCOMES = [
    _decision("e1", "P1", "payment.recorded"),
    _grant("e1", "P1", "phase1", "demo-pay", 3000),
    _decision("e2", "P1", "payment.refunded"),
    _grant("e2", "P1", "phase1", "demo-pay", -500),
    _decision("e3", "P2", "service.linked"),
    _grant("e3", "P2", "phase2_insurance", "qr-pay", 7500),
    _decision("e4", "P3", "service.linked", "account_linked_elsewhere"),
    {"kind": "alert", "code": "account_shared", "event_id": "e4", "person_id": "P3",
     "outcome_id": "e4-a", "service_id": "demo-pay", "service_account": "A1",
     "linked_person_id": "P1"},
    _decision("e5", "P3", "payment.recorded", "not_linked_service"),
    {"kind": "dead_letter", "error": "x", "reason": "naive_timestamp", "outcome_id": "line-9",
     "line": 9},
    {"kind": "dead_letter", "error": "x", "reason": "naive_timestamp", "outcome_id": "line-10",
     "line": 10},
    {"kind": "dead_letter", "error": "x", "reason": "not_json", "outcome_id": "line-11",
     "line": 11},
]


def test_totals_by_campaign_and_service():
    d = Audit().observe_all(OUTCOMES).as_dict()
    assert d["points"] == {"granted": 10_500, "clawed_back": 500, "net": 10_000,
                           "grant_outcomes": 3}
    assert d["points_by_campaign"] == {
        "phase1": {"granted": 3000, "clawed_back": 500, "net": 2500},
        "phase2_insurance": {"granted": 7500, "clawed_back": 0, "net": 7500},
    }
    assert d["points_by_service"] == {
        "demo-pay": {"granted": 3000, "clawed_back": 500, "net": 2500},
        "qr-pay": {"granted": 7500, "clawed_back": 0, "net": 7500},
    }
    assert d["people"] == 3


def test_decisions_alerts_and_dead_letters():
    d = Audit().observe_all(OUTCOMES).as_dict()
    assert d["decisions"]["total"] == 5 and d["decisions"]["rejected"] == 2
    assert d["decisions"]["by_type_and_reason"]["service.linked"] == {
        "accepted": 1, "account_linked_elsewhere": 1}
    assert d["account_shared"] == [{"person_id": "P3", "linked_person_id": "P1",
                                    "service_id": "demo-pay", "service_account": "A1",
                                    "event_id": "e4", "outcome_id": "e4-a"}]
    assert d["alerts"] == {"account_shared": 1}
    assert d["dead_letters_by_reason"] == {"naive_timestamp": 2, "not_json": 1}


def test_exact_repeats_count_once_and_conflicts_are_listed():
    tampered = {**OUTCOMES[1], "points": 9999}
    d = Audit().observe_all([*OUTCOMES, OUTCOMES[1], OUTCOMES[0], tampered, None]).as_dict()
    assert d["exact_repeats"] == 2 and d["unreadable"] == 1
    assert d["points"]["granted"] == 10_500
    assert [c["outcome_id"] for c in d["conflicting_ids"]] == ["e1-g"]
    assert "CONFLICTS" in Audit().observe_all([OUTCOMES[1], tampered]).render()


def test_render_is_readable():
    text = Audit().observe_all(OUTCOMES).render()
    assert "phase1" in text and "demo-pay" in text and "2,500" in text
    assert "P3 -> P1  demo-pay  A1  e4" in text
    assert "naive_timestamp" in text and "account_linked_elsewhere" in text


def test_audit_agrees_with_the_simulate_summary():
    lines = list(generate(people=300, seed=2, bad_ratio=0.01))
    outcomes = [o for batch in run(lines, CFG, Engine(CFG)) for o in batch]
    summary = Summary()
    summary.observe(outcomes)
    d = Audit().observe_all(msgspec.to_builtins(o) for o in outcomes).as_dict()
    assert {c: t["granted"] for c, t in d["points_by_campaign"].items()} == dict(summary.points)
    assert {c: t["clawed_back"] for c, t in d["points_by_campaign"].items()
            if t["clawed_back"]} == dict(summary.clawed_back)
    assert d["dead_letters_by_reason"] == dict(summary.dead_letters)
    assert d["decisions"]["accepted"] == summary.accepted
    assert sum(t["net"] for t in d["points_by_service"].values()) == d["points"]["net"]


def test_audit_command_from_outcomes_and_from_an_export(tmp_path, capsys):
    path = tmp_path / "outcomes.jsonl"
    path.write_bytes(b"".join(OUTCOME_ENCODER.encode(msgspec.convert(o, dict)) + b"\n"
                              for o in OUTCOMES) + b"not json\n")
    assert main(["audit", "--outcomes", str(path), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["points"]["net"] == 10_000 and d["unreadable"] == 1
    assert main(["audit", "--outcomes", str(path)]) == 0
    assert "== Mynapoint audit ==" in capsys.readouterr().out

    rec = record_offline(list(generate(people=100, seed=3, bad_ratio=0.02)), CFG)
    buf = io.BytesIO()
    rec.write_export(buf, CFG)
    export = tmp_path / "export.jsonl"
    export.write_bytes(buf.getvalue())
    assert main(["audit", "--file", str(export), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["outcomes_read"] == len(rec.outputs) and d["dead_letters_by_reason"]
    assert main(["audit", "--outcomes", str(tmp_path / "absent")]) == 2
    with pytest.raises(SystemExit):  # one source only (argparse)
        main(["audit", "--file", str(export), "--outcomes", str(path)])
