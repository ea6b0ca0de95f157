"""`mynapoint explain` (streams/audit/explain.py): a person's timeline and status in plain words."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from cli.main import main
from devtools.demo import generate
from streams.audit.explain import (
    REASONS,
    REASONS_BY_TYPE,
    as_dict,
    explain_events,
    explain_history,
    reason_text,
    render,
)
from streams.audit.replay import record_offline
from streams.core import reasons as R
from streams.core.config import load_config
from tests import builders as B
from tests.audit.journals import batched

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "streams" / "data" / "demo.toml"
CFG = load_config(DEMO)
JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


def _scenario() -> list[dict]:
    """P1: card, renewal, a reservation inside the wait, one after it, a phase-1 link, payments,
    a refund; P2 tries to link P1's account."""
    return [
        B.card("P1", "2020-06-01T10:00:00+09:00", expires="2030-01-01T00:00:00+09:00",
               event_id="c1"),
        B.renew("P1", "2020-07-01T10:00:00+09:00", event_id="r1"),
        B.reserve("P1", "2020-07-01T12:00:00+09:00", event_id="m1"),  # inside the 24 h wait
        B.reserve("P1", "2020-07-03T12:00:00+09:00", event_id="m2"),
        B.link("P1", "2020-08-01T10:00:00+09:00", event_id="l1"),
        B.pay("P1", "2020-09-10T10:00:00+09:00", txn="T1", amount=12_000, event_id="p1"),
        B.pay("P1", "2020-09-11T10:00:00+09:00", txn="T2", amount=10_000, event_id="p2"),
        B.refund("P1", "2020-09-20T10:00:00+09:00", txn="T2", amount=8_000, event_id="f1"),
        *B.phase1_ready("P2"),
        B.link("P2", "2020-08-02T10:00:00+09:00", event_id="l2"),  # the same account
        B.renew("P1", "2021-06-01T10:00:00+09:00", event_id="r2"),
        B.pay("P1", "2021-06-01T12:00:00+09:00", txn="T3", amount=100, event_id="p3"),
    ]


def _explain(person: str = "P1", cfg=B.DEFAULT_CONFIG):
    return explain_events(person, B.to_lines(_scenario()), cfg, source="scenario")


def test_every_reason_code_has_a_sentence_in_both_languages():
    assert set(REASONS) == set(R.ALL_REASONS)
    for code, (ja, en) in REASONS.items():
        assert JAPANESE.search(ja), code
        assert en and not JAPANESE.search(en), code
    for (type_name, code), (ja, en) in REASONS_BY_TYPE.items():
        assert code in R.ALL_REASONS and JAPANESE.search(ja) and en
        assert type_name in ("service.linked", "payment.recorded")


def test_the_renewal_wait_in_plain_words():
    assert reason_text("renewal_wait") == (
        "電子証明書の更新後の待機時間中のため受け付けられません",
        "requests are refused during the wait after a certificate renewal",
    )
    assert reason_text("something_new") == ("something_new", "something_new")


def test_timeline_has_each_event_with_its_decision_grants_and_alerts():
    expl = _explain()
    ids = [item.event.event_id for item in expl.items]
    assert ids == ["c1", "r1", "m1", "m2", "l1", "p1", "p2", "f1", "r2", "p3"]
    verdicts = {i.event.event_id: (i.decision.reason or "accepted") for i in expl.items}
    assert verdicts["m1"] == "renewal_wait" and verdicts["m2"] == "accepted"
    grants = {i.event.event_id: [g.points for g in i.grants] for i in expl.items}
    assert grants["p1"] == [3000] and grants["p2"] == [2000] and grants["f1"] == [-1500]
    assert grants["p3"] == [25]  # 14,100 yen eligible: 3,525 points
    p2 = _explain("P2")
    link = next(i for i in p2.items if i.event.event_id == "l2")
    assert link.decision.reason == "account_linked_elsewhere"
    assert link.alerts and link.alerts[0].linked_person_id == "P1"


def test_status_points_remaining_link_certificate_and_wait():
    st = _explain().status()
    phase1 = next(c for c in st["campaigns"] if c["campaign"] == "phase1")
    assert (phase1["points"], phase1["cap"], phase1["remaining"]) == (3525, 5000, 1475)
    assert phase1["service_id"] == "demo-pay" and phase1["service_account"] == "acct-1"
    assert phase1["linked_at"] == "2020-08-01 10:00 JST"
    other = next(c for c in st["campaigns"] if c["campaign"] == "phase2_purchase")
    assert other["service_id"] is None and other["remaining"] == 5000
    card = st["card"]
    assert card["certificate_expires_at"] == "2031-01-01 00:00 JST"
    assert card["certificate_expired"] is False
    # The last event (2021-06-01 12:00) is two hours after a renewal: a 24 h wait before 2022.
    assert card["renewal_wait"] == {"active": True, "renewed_at": "2021-06-01 10:00 JST",
                                    "until": "2021-06-02 10:00 JST"}
    assert st["as_of"] == "2021-06-01 12:00 JST" and st["total_points"] == 3525


def test_render_in_each_language():
    expl = _explain()
    both = render(expl, "both")
    ja = render(expl, "ja")
    en = render(expl, "en")
    assert "電子証明書の更新後の待機時間中のため受け付けられません" in both
    assert "requests are refused during the wait after a certificate renewal" in both
    assert "電子証明書の更新後の待機時間中" in ja and "requests are refused" not in ja
    assert "requests are refused" in en and not JAPANESE.search(
        en.replace(expl.items[0].event.event_id, ""))
    assert "2020-07-01 12:00 JST" in en
    assert "+3,000 points granted" in en and "1,500 points clawed back" in en
    assert "renewal wait: ACTIVE" in en and "1,475 left to the cap" in en
    assert "残り 1,475" in ja
    shared = render(_explain("P2"), "en")
    assert "already linked to P1" in shared


def test_an_alert_without_the_other_person_names_no_one():
    import msgspec

    from schemas.outcomes import Alert
    from streams.audit.explain import alert_text

    named = Alert(code="account_shared", event_id="e", person_id="P2", outcome_id="o",
                  service_id="s", service_account="acct", linked_person_id="P1")
    ja, en = alert_text(named)
    assert "既に P1 の方に紐付けられています" in ja and "already linked to P1 (" in en
    ja, en = alert_text(msgspec.structs.replace(named, linked_person_id=None))
    assert "既に別の方に紐付けられています" in ja and "already linked to another person (" in en


def test_late_decisions_say_so():
    from schemas.outcomes import Decision
    from streams.audit.explain import decision_text

    d = Decision(event_id="e", person_id="P", type="mykey.reserved", accepted=False,
                 reason="renewal_wait", outcome_id="x", rules_version="r", late=True)
    ja, en = decision_text(d)
    assert "遅れた" in ja and "decided late" in en and "renewal" in en


def test_unknown_person():
    expl = _explain("NOBODY")
    assert not expl.found
    assert "no events for NOBODY" in render(expl, "en")


def test_as_dict_is_json_and_bilingual():
    d = json.loads(json.dumps(as_dict(_explain()), ensure_ascii=False))
    assert d["found"] and d["person_id"] == "P1"
    m1 = next(i for i in d["timeline"] if i["event_id"] == "m1")
    assert m1["decision"]["reason"] == "renewal_wait"
    assert JAPANESE.search(m1["decision"]["ja"]) and "renewal" in m1["decision"]["en"]
    assert d["status"]["card"]["renewal_wait"]["active"] is True


def test_dead_letters_of_the_person_are_listed():
    lines = B.to_lines(_scenario()) + [b'{"event_id":"x","type":"card.issued","person_id":"P1"}']
    expl = explain_events("P1", lines, B.DEFAULT_CONFIG)
    assert [d["reason"] for d in expl.dead_letters] == ["missing_field"]
    assert "missing_field" in render(expl, "en")


@pytest.fixture(scope="module")
def demo():
    lines = list(generate(people=200, seed=8, bad_ratio=0.0))
    return lines, record_offline(lines, CFG)


def test_explaining_a_journal_matches_explaining_the_events(demo):
    lines, rec = demo
    history = rec.history(tables=False)
    for person in ("P0000000", "P0000042", "P0000199"):
        a = explain_history(person, history, CFG)
        b = explain_events(person, lines, CFG)
        assert a.found and not a.notes, a.notes
        da, db = as_dict(a), as_dict(b)
        for item in da["timeline"] + db["timeline"]:
            item.pop("source")
        assert da["timeline"] == db["timeline"]
        assert da["status"] == db["status"]


def test_a_journal_in_records_of_several_entries_explains_alike(demo):
    _, rec = demo
    in_batches = batched(rec, 8)
    assert len(in_batches.journal) < len(rec.journal)
    one, many = rec.history(tables=False), in_batches.history(tables=False)
    for person in ("P0000000", "P0000042", "P0000199"):
        a, b = explain_history(person, one, CFG), explain_history(person, many, CFG)
        assert b.found and not b.notes, b.notes
        assert as_dict(b) == as_dict(a)


def test_a_tampered_publication_is_noted(demo):
    _, rec = demo
    history = rec.history(tables=False)
    grant = next(p for p in history.outcomes if p.outcome and p.outcome["kind"] == "grant")
    grant.outcome = {**grant.outcome, "points": 1}
    expl = explain_history(grant.outcome["person_id"], history, CFG)
    assert any("mynapoint replay" in n for n in expl.notes)


def test_explain_command(demo, tmp_path, capsys):
    lines, rec = demo
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    assert main(["explain", "P0000042", "--events", str(events), "--config", str(DEMO),
                 "--lang", "en"]) == 0
    out = capsys.readouterr().out
    assert "P0000042: timeline" in out and "points per campaign" in out
    export = tmp_path / "export.jsonl"
    buf = io.BytesIO()
    rec.write_export(buf, CFG, config_toml=DEMO.read_text(encoding="utf-8"))
    export.write_bytes(buf.getvalue())
    assert main(["explain", "P0000042", "--file", str(export), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["found"] and d["rules_version"] == CFG.version and d["notes"] == []
    assert main(["explain", "NOBODY", "--file", str(export)]) == 1
    assert main(["explain", "P1", "--events", str(tmp_path / "absent")]) == 2


@pytest.mark.parametrize("person", ["123456789012", "P 1", "x" * 65])
def test_explain_refuses_what_cannot_be_a_person_id_without_echoing_it(demo, tmp_path, capsys,
                                                                     person):
    lines, _ = demo
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    assert main(["explain", person, "--events", str(events), "--config", str(DEMO)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "not a person_id" in err and "12-digit" in err
    assert person not in err
