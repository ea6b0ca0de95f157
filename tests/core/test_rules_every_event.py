"""Every event (RULES.md "Every event"), outcome formats (CONTRACT.md "Outcomes"), configuration
overrides (CONTRACT.md "Configuration"), and a check that the tables cover every reason code."""

from __future__ import annotations

import pytest

from schemas.outcomes import Alert, DeadLetter, Decision, Grant
from streams.core import reasons
from tests.builders import (
    alerts,
    as_json,
    card,
    config,
    config_from_toml,
    decisions,
    grants,
    grants_for,
    insurance,
    link,
    pay,
    phase1_linked,
    phase1_ready,
    phase2_ready,
    refund,
    renew,
    reserve,
    resume,
    row,
    simulate,
    suspend,
    to_lines,
    verdicts,
)
from tests.core import (
    test_rules_certificates,
    test_rules_facts,
    test_rules_linking,
    test_rules_payments,
    test_rules_reservation,
)

T = "2021-06-01T10:00:00+09:00"


def _t(day: int, hour: int = 10) -> str:
    return f"2021-06-{day:02d}T{hour:02d}:00:00+09:00"


# --- duplicate_event ---------------------------------------------------------------------------

# (src, events, expected verdicts). Rows reuse an event_id on purpose via event_id=...
DUPLICATES = [
    row("RULES.md Every event: a repeated card.issued event_id is duplicate_event and changes "
        "nothing (the repeat's expired certificate is not taken)",
        [card("P1", "2021-05-01T10:00:00+09:00", event_id="c1"),
         card("P1", _t(1, 9), event_id="c1", expires="2021-05-15T00:00:00+09:00"),
         reserve("P1", T)],
        ["accepted", "duplicate_event", "accepted"], id="card.issued"),
    row("RULES.md Every event: mykey.reserved repeat is duplicate_event, not mykey_already_set",
        [card("P1", "2021-05-01T10:00:00+09:00"), reserve("P1", T, event_id="r1"),
         reserve("P1", _t(2), event_id="r1")],
        ["accepted", "accepted", "duplicate_event"], id="mykey.reserved"),
    row("RULES.md Every event: a refused request's event_id is remembered too (retry with the "
        "same id after the card arrived)",
        [reserve("P1", T, event_id="r1"), card("P1", _t(1, 11)),
         reserve("P1", _t(1, 12), event_id="r1"), reserve("P1", _t(1, 13))],
        ["no_card", "accepted", "duplicate_event", "accepted"], id="refused-then-retried"),
    row("RULES.md Every event: a repeated certificate.renewed does not restart the wait",
        [card("P1", "2021-05-01T10:00:00+09:00"), renew("P1", _t(1), event_id="w1"),
         renew("P1", _t(2, 9), event_id="w1"), reserve("P1", _t(2, 10))],
        ["accepted", "accepted", "duplicate_event", "accepted"], id="certificate.renewed"),
    row("RULES.md Every event: a repeated card.suspended after a resume does not suspend again",
        [card("P1", "2021-05-01T10:00:00+09:00"), suspend("P1", _t(1, 9), event_id="s1"),
         resume("P1", _t(1, 10)), suspend("P1", _t(1, 11), event_id="s1"),
         reserve("P1", _t(1, 12))],
        ["accepted", "accepted", "accepted", "duplicate_event", "accepted"],
        id="card.suspended"),
    row("RULES.md Every event: insurance.registered repeat is duplicate_event, not "
        "already_registered",
        [card("P1", "2021-05-01T10:00:00+09:00"), insurance("P1", T, event_id="i1"),
         insurance("P1", _t(2), event_id="i1")],
        ["accepted", "accepted", "duplicate_event"], id="insurance.registered"),
    row("RULES.md Every event: service.linked repeat is duplicate_event, not already_linked",
        [*phase1_ready("P1"), link("P1", "2020-08-01T10:00:00+09:00", event_id="l1"),
         link("P1", "2020-08-02T10:00:00+09:00", event_id="l1")],
        ["accepted", "accepted", "accepted", "duplicate_event"], id="service.linked"),
    row("RULES.md Every event: event ids are per person (another person's e1 is not a duplicate)",
        [card("P1", T, event_id="x1"), card("P2", T, event_id="x1")],
        ["accepted", "accepted"], id="per-person"),
    row("RULES.md Every event: the same event_id on a different type of event is still a "
        "duplicate",
        [card("P1", T, event_id="x1"), reserve("P1", _t(2), event_id="x1")],
        ["accepted", "duplicate_event"], id="other-type"),
    row("RULES.md Every event: payments are deduplicated by transaction_id instead (choice: a "
        "payment.recorded with a reused event_id but a new transaction counts)",
        [*phase1_linked("P1"), pay("P1", "2020-09-10T10:00:00+09:00", "T1", 400, event_id="p1"),
         pay("P1", "2020-09-11T10:00:00+09:00", "T2", 400, event_id="p1")],
        ["accepted"] * 5, id="payment-new-transaction"),
    row("RULES.md Every event/Payments: same event_id and transaction is duplicate_transaction",
        [*phase1_linked("P1"), pay("P1", "2020-09-10T10:00:00+09:00", "T1", 400, event_id="p1"),
         pay("P1", "2020-09-10T10:00:00+09:00", "T1", 400, event_id="p1")],
        ["accepted"] * 4 + ["duplicate_transaction"], id="payment-redelivered"),
    row("RULES.md Every event: a repeated payment.refunded event_id is duplicate_event (choice: "
        "'payments' in the parenthesis means payment.recorded)",
        [*phase1_linked("P1"), pay("P1", "2020-09-10T10:00:00+09:00", "T1", 1000),
         refund("P1", "2020-09-20T10:00:00+09:00", "T1", 400, event_id="f1"),
         refund("P1", "2020-09-20T10:00:00+09:00", "T1", 400, event_id="f1")],
        ["accepted"] * 5 + ["duplicate_event"], id="payment.refunded"),
]


@pytest.mark.parametrize(("src", "events", "expected"), DUPLICATES)
def test_duplicate_event(src, events, expected):
    outcomes = simulate(events)
    got = [d.reason or "accepted" for d in decisions(outcomes)]
    assert len(got) == len(events), "one decision per input event"
    assert got == expected, src


def test_duplicate_refund_claws_back_once():
    """RULES.md Every event: duplicate_event 'changes nothing': no second clawback, and the
    refundable remainder is untouched (a third refund of 4,000 still fits)."""
    r1 = refund("P1", "2020-09-20T10:00:00+09:00", "T1", 4000, event_id="f1")
    r2 = refund("P1", "2020-09-21T10:00:00+09:00", "T1", 4000, event_id="f1")
    r3 = refund("P1", "2020-09-22T10:00:00+09:00", "T1", 4000)
    r4 = refund("P1", "2020-09-23T10:00:00+09:00", "T1", 1)
    outcomes = simulate([*phase1_linked("P1"), pay("P1", "2020-09-10T10:00:00+09:00", "T1", 8000),
                         r1, r2, r3, r4])
    assert [(d.event_id, d.reason) for d in decisions(outcomes)][-4:] == [
        ("f1", None), ("f1", "duplicate_event"), (r3["event_id"], None),
        (r4["event_id"], "refund_exceeds_payment"),
    ]
    assert [(g.event_id, g.points) for g in grants(outcomes)][1:] == [
        ("f1", -1000), (r3["event_id"], -1000),
    ]


def test_duplicate_flat_link_grants_once_and_duplicate_shared_link_alerts_once():
    """RULES.md Every event: a repeated event_id changes nothing (no grant, no alert)."""
    ins = link("P1", "2022-11-03T10:00:00+09:00", "phase2_insurance", event_id="L")
    shared = link("P2", "2022-11-03T11:00:00+09:00", "phase2_purchase", event_id="S")
    events = [
        *phase2_ready("P1"), insurance("P1", "2022-11-02T11:00:00+09:00"), ins, ins,
        *phase2_ready("P2"), shared, shared,
    ]
    outcomes = simulate(events)
    assert [g.points for g in grants(outcomes)] == [7500]
    assert [(a.person_id, a.linked_person_id) for a in alerts(outcomes)] == [("P2", "P1")]
    assert [d.reason for d in decisions(outcomes) if d.event_id in ("L", "S")] == [
        None, "duplicate_event", "account_linked_elsewhere", "duplicate_event",
    ]


# --- one decision per event, in processing order ---------------------------------------------------


def _mixed_stream() -> list[dict]:
    return [
        *phase1_linked("A"),
        pay("A", "2020-09-10T10:00:00+09:00", "T1", 30000),
        pay("A", "2020-09-11T10:00:00+09:00", "T2", 100),
        refund("A", "2020-09-20T10:00:00+09:00", "T1", 20000),
        refund("A", "2020-09-20T10:00:00+09:00", "T9", 1),
        *phase1_ready("B"),
        link("B", "2020-08-05T10:00:00+09:00", account="acct-1"),
        *phase2_ready("C"),
        insurance("C", "2022-11-02T11:00:00+09:00"),
        link("C", "2022-11-03T10:00:00+09:00", "phase2_insurance", account="c-acct"),
        suspend("D", "2021-01-01T10:00:00+09:00"),
        reserve("D", "2021-01-01T10:00:00+09:00"),
    ]


def test_exactly_one_decision_per_event_and_follow_ups_directly_after():
    """RULES.md Every event: each input event gets exactly one decision; CONTRACT.md: a grant
    (or alert) follows its event's decision."""
    events = _mixed_stream()
    outcomes = simulate(events)
    ds = decisions(outcomes)
    assert [d.event_id for d in ds] == [e["event_id"] for e in events]
    assert [d.type for d in ds] == [e["type"] for e in events]
    assert [d.person_id for d in ds] == [e["person_id"] for e in events]
    current = None
    for o in outcomes:
        if isinstance(o, Decision):
            current = o
        else:
            assert isinstance(o, Grant | Alert), o
            assert current is not None and o.event_id == current.event_id, (o, current)
            assert o.person_id == current.person_id
    # T1 30,000 -> 5,000; T2 cap_reached; refund 20,000 -> S 10,000 -> -2,500; C's flat 7,500.
    assert [g.points for g in grants(outcomes)] == [5000, -2500, 7500]
    assert len(alerts(outcomes)) == 1


def test_decision_format():
    """CONTRACT.md Outcomes: decisions have kind, event_id, person_id, type, accepted, reason
    (null when accepted) in that order first."""
    events = _mixed_stream()
    js = as_json(simulate(events))
    head = ["kind", "event_id", "person_id", "type", "accepted", "reason"]
    ds = [o for o in js if o["kind"] == "decision"]
    assert len(ds) == len(events)
    for o, ev in zip(ds, events, strict=True):
        assert list(o)[:6] == head, o
        assert (o["event_id"], o["person_id"], o["type"]) == (
            ev["event_id"], ev["person_id"], ev["type"],
        )
        assert isinstance(o["accepted"], bool)
        if o["accepted"]:
            assert "reason" in o and o["reason"] is None
        else:
            assert isinstance(o["reason"], str) and o["reason"] in reasons.ALL_REASONS
    assert any(o["accepted"] for o in ds) and any(not o["accepted"] for o in ds)


def test_grant_and_alert_format():
    js = as_json(simulate(_mixed_stream()))
    for o in js:
        if o["kind"] == "grant":
            assert list(o)[:6] == [
                "kind", "event_id", "person_id", "campaign", "service_id", "points",
            ]
            assert isinstance(o["points"], int) and o["points"] != 0
        elif o["kind"] == "alert":
            assert list(o)[:4] == ["kind", "code", "event_id", "person_id"]
            assert o["code"] == "account_shared"
            assert o["linked_person_id"] == "A" and o["person_id"] == "B"


def test_bad_line_is_dead_lettered_and_processing_continues():
    """CONTRACT.md Input events: bad input is dead-lettered, never stops processing."""
    events = [card("P1", T), reserve("P1", _t(2))]
    lines = to_lines([events[0], b"{not json", {"type": "card.issued"}, events[1]])
    outcomes = simulate(lines)
    assert [type(o).__name__ for o in outcomes] == [
        "Decision", "DeadLetter", "DeadLetter", "Decision",
    ]
    assert [o.line for o in outcomes if isinstance(o, DeadLetter)] == [2, 3]
    assert verdicts(events) == ["accepted", "accepted"]


def test_late_event_does_not_rewrite_earlier_decisions():
    """RULES.md Every event: decisions use the state known at that moment; a late event (a card
    that occurred earlier but arrives later) does not rewrite the earlier decision."""
    req = reserve("P1", _t(2))
    late_card = card("P1", _t(1))
    outcomes = simulate([req, late_card])
    assert [(d.event_id, d.reason) for d in decisions(outcomes)] == [
        (req["event_id"], "no_card"), (late_card["event_id"], None),
    ]
    assert len(outcomes) == 2


# --- configuration overrides -----------------------------------------------------------------

CATALOG_TOML = """
[[services]]
id = "x-pay"
name = "X Pay"
campaigns = ["phase1", "phase2_purchase"]
selectable_from = 2020-07-01
preregistration_required = false
same_day_excluded = false
"""


def test_services_catalog_replaces_default(tmp_path):
    """CONTRACT.md Configuration: '[[services]] the catalog; a file that names services replaces
    it whole' -- the default's only service, demo-pay, is then unknown."""
    cfg = config_from_toml(CATALOG_TOML, tmp_path)
    events = [
        *phase1_ready("P1"),
        link("P1", "2020-08-01T10:00:00+09:00", service="demo-pay"),
        link("P1", "2020-08-01T11:00:00+09:00", service="x-pay"),
        *phase2_ready("P2"),
        insurance("P2", "2022-11-02T11:00:00+09:00"),
        link("P2", "2022-11-03T10:00:00+09:00", "phase2_insurance", service="x-pay"),
    ]
    assert verdicts(events, cfg) == [
        "accepted", "accepted", "unknown_service", "accepted",
        "accepted", "accepted", "accepted", "service_not_selectable",
    ]
    # And with the defaults, demo-pay is the one service; x-pay is unknown.
    assert verdicts(events) == [
        "accepted", "accepted", "accepted", "unknown_service",
        "accepted", "accepted", "accepted", "unknown_service",
    ]


@pytest.mark.parametrize(
    ("src", "toml", "events", "expected"),
    [
        row("CONTRACT.md Configuration: [[renewal_wait]] replaces the default waits (2 hours always)",
            "[[renewal_wait]]\nfrom = 2020-01-01\nhours = 2\n",
            [card("P1", "2021-05-01T10:00:00+09:00"), renew("P1", "2022-07-01T10:00:00+09:00"),
             reserve("P1", "2022-07-01T11:59:59+09:00"), reserve("P1", "2022-07-01T12:00:00+09:00")],
            ["accepted", "accepted", "renewal_wait", "accepted"], id="renewal-wait-2h"),
        row("CONTRACT.md Configuration: with the default waits the same request is accepted (1 h)",
            "",
            [card("P1", "2021-05-01T10:00:00+09:00"), renew("P1", "2022-07-01T10:00:00+09:00"),
             reserve("P1", "2022-07-01T11:59:59+09:00")],
            ["accepted", "accepted", "accepted"], id="renewal-wait-default"),
        row("CONTRACT.md Configuration: reservation_budget from the file; seed 001 L144",
            "reservation_budget = 1\n",
            [card("A", T), card("B", T), reserve("A", _t(2)), reserve("B", _t(2))],
            ["accepted", "accepted", "accepted", "budget_exhausted"], id="budget"),
        row("CONTRACT.md Configuration: a changed cap; seed 003 L33 example shape (20,000 yen)",
            "[campaigns.phase1]\ncap = 2500\n",
            [*phase1_linked("P1"), pay("P1", "2020-09-10T10:00:00+09:00", "T1", 20000),
             pay("P1", "2020-09-11T10:00:00+09:00", "T2", 20000)],
            ["accepted"] * 4 + ["cap_reached"], id="cap"),
        row("seed 003 L20: 令和3年4月末までにマイナンバーカードを申請 (card_applied_by is configuration)",
            "[campaigns.phase1]\ncard_applied_by = 2021-03-31\n",
            [card("P1", "2021-05-01T10:00:00+09:00", applied="2021-04-01"), reserve("P1", T),
             link("P1", _t(2))],
            ["accepted", "accepted", "card_applied_too_late"], id="card-deadline"),
    ],
)
def test_config_from_toml(tmp_path, src, toml, events, expected):
    assert verdicts(events, config_from_toml(toml, tmp_path)) == expected, src


def test_changed_cap_grants():
    cfg = config({"campaigns": {"phase1": {"cap": 2500}}})
    p1 = pay("P1", "2020-09-10T10:00:00+09:00", "T1", 20000)
    outcomes = simulate([*phase1_linked("P1"), p1], cfg)
    assert grants_for(outcomes, p1["event_id"]) == [2500]


def test_rules_version_names_the_configuration():
    """CONTRACT.md allows extra fields; decisions carry the configuration's fingerprint, so two
    configurations give two versions."""
    ev = [card("P1", T)]
    a = decisions(simulate(ev))[0].rules_version
    b = decisions(simulate(ev, config({"reservation_budget": 5})))[0].rules_version
    assert a and b and a != b


@pytest.mark.parametrize(("make", "said"), [
    (lambda d: d / "missing.toml", "does not exist"),
    (lambda d: d, "cannot be read (Is a directory)"),
    (lambda d: (d / "bad.toml").write_text("x = [") and d / "bad.toml", "is not valid TOML"),
])
def test_an_unusable_config_file_is_a_message_not_a_traceback(tmp_path, make, said):
    from streams.core.config import ConfigError, load_config

    with pytest.raises(ConfigError) as caught:
        load_config(make(tmp_path))
    assert said in str(caught.value)


def test_the_config_command_resolves_the_configuration_as_the_worker_does(capsys, monkeypatch):
    # On a worker's host, `mynapoint config` printed RULES.md's defaults while the worker ran
    # the rules of $MYNAPOINT_CONFIG.
    import json

    from cli.main import main
    from devtools.demo import DEMO_CONFIG
    from streams.core.config import load_config

    monkeypatch.delenv("MYNAPOINT_CONFIG", raising=False)
    assert main(["config"]) == 0
    assert json.loads(capsys.readouterr().out)["rules_version"] == load_config(None).version
    monkeypatch.setenv("MYNAPOINT_CONFIG", str(DEMO_CONFIG))
    assert main(["config"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["rules_version"] == load_config(DEMO_CONFIG).version
    assert "from $MYNAPOINT_CONFIG" in err
    # The flag wins over the variable.
    monkeypatch.setenv("MYNAPOINT_CONFIG", "/nonexistent.toml")
    assert main(["config", "--config", str(DEMO_CONFIG)]) == 0
    assert json.loads(capsys.readouterr().out)["rules_version"] == load_config(DEMO_CONFIG).version


# --- coverage of the reason codes --------------------------------------------------------------

# Every reason code RULES.md names (copied from RULES.md; the alert code is separate).
RULES_MD_CODES = {
    "no_card", "card_suspended", "certificate_expired", "renewal_wait",
    "mykey_already_set", "budget_exhausted",
    "no_mykey", "outside_window", "card_applied_too_late", "proxy_not_allowed",
    "unknown_service", "service_not_selectable", "preregistration_missing", "phase1_applied",
    "not_registered", "already_linked", "service_change_not_allowed", "account_linked_elsewhere",
    "not_linked_service", "duplicate_transaction", "before_link", "same_day_excluded",
    "cap_reached", "unknown_transaction", "refund_exceeds_payment",
    "already_registered", "duplicate_event",
}


def test_reason_codes_match_rules_md():
    assert set(reasons.ALL_REASONS) == RULES_MD_CODES
    assert reasons.ALERT_ACCOUNT_SHARED == "account_shared"


def _strings(value, out):
    if isinstance(value, str):
        out.add(value)
    elif isinstance(value, list | tuple):
        for v in value:
            _strings(v, out)
    elif isinstance(value, dict):
        for v in value.values():
            _strings(v, out)


def test_every_reason_code_is_expected_by_some_table_row():
    tables = [
        test_rules_certificates.CASES,
        test_rules_reservation.SINGLE_REASONS, test_rules_reservation.ORDER,
        test_rules_reservation.BUDGET,
        test_rules_linking.REASONS, test_rules_linking.ORDER,
        test_rules_payments.PAYMENTS, test_rules_payments.OVERRIDES,
        test_rules_facts.FACTS,
        DUPLICATES,
    ]
    seen: set[str] = set()
    for table in tables:
        for param in table:
            # The expectation is the last value of each row.
            _strings(param.values[-1], seen)
    assert RULES_MD_CODES - seen == set()
