"""Payments, refunds and points (RULES.md "Payments", the flat grants of "Linking a service").

Each row: a setup (all accepted), then steps; for every step the expected verdict and the grant
it produces (None: no grant line at all). Points are cumulative: the grant is the change in
total = min(cap, floor(S x rate / 100)).
"""

from __future__ import annotations

import datetime as dt

import pytest

from tests.builders import (
    account_reg,
    as_json,
    config,
    decision_for,
    grants,
    insurance,
    link,
    pay,
    phase1_linked,
    phase1_ready,
    phase2_linked,
    phase2_ready,
    refund,
    row,
    simulate,
    verdict,
)

ALL = ["phase1", "phase2_purchase", "phase2_insurance", "phase2_account"]
SAME_DAY = config(
    {
        "services": [
            {"id": "demo-pay", "campaigns": ALL},
            {"id": "sameday-pay", "campaigns": ALL, "same_day_excluded": True},
        ]
    }
)

P1 = phase1_linked("P1")  # phase1 link 2020-08-01 10:00 JST, demo-pay / acct-1
D = "2020-09-10T10:00:00+09:00"  # a day inside phase1's payment window, after the link


def _at(day: int, hour: int = 10) -> str:
    return f"2020-09-{day:02d}T{hour:02d}:00:00+09:00"


def _run(setup, steps, cfg):
    outcomes = simulate([*setup, *steps], cfg)
    for ev in setup:
        assert decision_for(outcomes, ev["event_id"]).accepted, ev
    got = []
    for ev in steps:
        d = decision_for(outcomes, ev["event_id"])
        gs = [g for g in grants(outcomes) if g.event_id == ev["event_id"]]
        assert len(gs) <= 1, gs
        got.append((verdict(d), gs[0].points if gs else None))
    return outcomes, got


# (src, setup, steps, config or None, expected [(verdict, grant points or None), ...])
PAYMENTS = [
    # --- not_linked_service ---------------------------------------------------------------
    row("RULES.md Payments: not_linked_service; seed 001 L209: 先に選択し申し込んだキャッシュレス決済サービスを"
        "利用して (no link at all)",
        phase1_ready("P1"), [pay("P1", D)], None, [("not_linked_service", None)],
        id="no-link"),
    row("RULES.md Payments: not_linked_service (a person the system has never seen)",
        [], [pay("P1", D)], None, [("not_linked_service", None)], id="unknown-person"),
    row("RULES.md Payments: the same service *and account* (another account of the service)",
        P1, [pay("P1", D, account="acct-2")], None, [("not_linked_service", None)],
        id="other-account"),
    row("RULES.md Payments: another service than the linked one",
        P1, [pay("P1", D, service="other-pay")], None, [("not_linked_service", None)],
        id="other-service"),
    row("RULES.md Payments: only phase1/phase2_purchase links earn; a phase2_insurance link does not",
        [*phase2_ready("P1"), insurance("P1", "2022-11-02T11:00:00+09:00"),
         link("P1", "2022-11-03T10:00:00+09:00", "phase2_insurance")],
        [pay("P1", "2022-11-10T10:00:00+09:00")], None, [("not_linked_service", None)],
        id="flat-link-does-not-earn"),
    row("RULES.md Payments: not_linked_service comes before duplicate_transaction",
        P1, [pay("P1", D, txn="T1", account="acct-2"), pay("P1", D, txn="T1", account="acct-2")],
        None, [("not_linked_service", None), ("not_linked_service", None)],
        id="unlinked-not-remembered"),
    # --- duplicate_transaction ---------------------------------------------------------------
    row("RULES.md Payments: duplicate_transaction (a new event_id, the same transaction_id)",
        P1, [pay("P1", D, txn="T1", amount=4000), pay("P1", _at(11), txn="T1", amount=4000)],
        None, [("accepted", 1000), ("duplicate_transaction", None)], id="duplicate"),
    row("RULES.md Payments: duplicate_transaction before before_link (a refused payment is "
        "recorded too)",
        P1, [pay("P1", "2020-07-31T10:00:00+09:00", txn="T1"),
             pay("P1", "2020-07-31T10:00:00+09:00", txn="T1")],
        None, [("before_link", None), ("duplicate_transaction", None)],
        id="duplicate>before_link"),
    row("RULES.md Payments: duplicate_transaction before cap_reached",
        P1, [pay("P1", D, txn="T1", amount=20000), pay("P1", D, txn="T1", amount=20000)],
        None, [("accepted", 5000), ("duplicate_transaction", None)], id="duplicate>cap_reached"),
    row("RULES.md Payments: another transaction_id is not a duplicate",
        P1, [pay("P1", D, txn="T1", amount=400), pay("P1", D, txn="T2", amount=400)],
        None, [("accepted", 100), ("accepted", 100)], id="distinct-transactions"),
    row("RULES.md Payments: transaction ids are per person (another person may reuse one)",
        [*P1, *phase1_linked("P9", account="acct-9")],
        [pay("P1", D, txn="T1", amount=400), pay("P9", D, txn="T1", amount=400, account="acct-9")],
        None, [("accepted", 100), ("accepted", 100)], id="txn-per-person"),
    # --- before_link ---------------------------------------------------------------------------
    row("RULES.md Payments: before_link; seed 000 L94: 9月1日以降でもマイナポイント申込前に行ったチャージ"
        "…ポイントは付与されません",
        [*phase1_ready("P1"), link("P1", "2020-09-15T10:00:00+09:00")],
        [pay("P1", "2020-09-15T09:59:59+09:00")], None, [("before_link", None)],
        id="one-second-before-link"),
    row("seed 003 L87: 申込み前に、チャージやお買い物をしていただいても、マイナポイントは付与されません "
        "(the link instant itself is not before it)",
        [*phase1_ready("P1"), link("P1", "2020-09-15T10:00:00+09:00")],
        [pay("P1", "2020-09-15T01:00:00Z", amount=400)], None, [("accepted", 100)],
        id="at-link-instant"),
    row("RULES.md Payments order: before_link before outside_window; seed 000 L93/L94",
        P1, [pay("P1", "2020-07-31T10:00:00+09:00")], None, [("before_link", None)],
        id="before_link>outside_window"),
    row("RULES.md Payments order: before_link before same_day_excluded",
        [*phase2_ready("P1"), link("P1", "2022-03-01T14:00:00+09:00", "phase2_purchase",
                                   service="sameday-pay")],
        [pay("P1", "2022-03-01T10:00:00+09:00", service="sameday-pay")], SAME_DAY,
        [("before_link", None)], id="before_link>same_day_excluded"),
    # --- same_day_excluded ------------------------------------------------------------------------
    row("RULES.md Payments: same_day_excluded; seed 002 L5: 申込当日のチャージ・買い物はポイント付与対象とならない "
        "(link 23:00 JST, payment 23:59:59 JST)",
        [*phase2_ready("P1"), link("P1", "2022-03-01T14:00:00Z", "phase2_purchase",
                                   service="sameday-pay")],
        [pay("P1", "2022-03-01T14:59:59Z", service="sameday-pay")], SAME_DAY,
        [("same_day_excluded", None)], id="same-jst-day"),
    row("seed 002 L5: 申込当日 is the JST date: 2022-03-01T15:00:00Z is already 03-02 JST",
        [*phase2_ready("P1"), link("P1", "2022-03-01T14:00:00Z", "phase2_purchase",
                                   service="sameday-pay")],
        [pay("P1", "2022-03-01T15:00:00Z", service="sameday-pay", amount=400)], SAME_DAY,
        [("accepted", 100)], id="next-jst-day"),
    row("seed 002 L5: same JST date although the UTC dates differ (link 03-02 01:00 JST, "
        "payment 03-02 23:00 JST)",
        [*phase2_ready("P1"), link("P1", "2022-03-01T16:00:00Z", "phase2_purchase",
                                   service="sameday-pay")],
        [pay("P1", "2022-03-02T14:00:00Z", service="sameday-pay")], SAME_DAY,
        [("same_day_excluded", None)], id="same-jst-day-utc-dates-differ"),
    row("seed 002 L5: 一部の決済サービスについては (a service without the rule counts same-day payments)",
        [*phase2_ready("P1"), link("P1", "2022-03-01T14:00:00Z", "phase2_purchase")],
        [pay("P1", "2022-03-01T14:59:59Z", amount=400)], SAME_DAY, [("accepted", 100)],
        id="service-without-rule"),
    row("RULES.md Payments order: same_day_excluded before outside_window (phase1 link 08-01, "
        "payment 08-01)",
        [*phase1_ready("P1"), link("P1", "2020-08-01T10:00:00+09:00", service="sameday-pay")],
        [pay("P1", "2020-08-01T11:00:00+09:00", service="sameday-pay")], SAME_DAY,
        [("same_day_excluded", None)], id="same_day_excluded>outside_window"),
    # --- outside_window ----------------------------------------------------------------------------
    row("RULES.md Campaigns phase1 payments from 2020-09-01; seed 000 L93: 申込み後でも、8月末までの"
        "チャージ…には、マイナポイントは付与されません",
        P1, [pay("P1", "2020-08-31T23:59:59+09:00")], None, [("outside_window", None)],
        id="phase1-before-pay_from"),
    row("seed 000 L105: 付与開始…は、2020年9月1日から (2020-08-31T15:00:00Z = 09-01 00:00 JST)",
        P1, [pay("P1", "2020-08-31T15:00:00Z", amount=400)], None, [("accepted", 100)],
        id="phase1-pay_from-jst"),
    row("RULES.md Campaigns phase1 payments ..2023-09-30; seed 002 L14: 第1弾で上限までのポイントを受け取って"
        "いない方は引き続き令和5年9月末までポイントの付与を受けることができます",
        P1, [pay("P1", "2023-09-30T23:59:59+09:00", amount=400)], None, [("accepted", 100)],
        id="phase1-last-second"),
    row("seed 002 L14: 令和5年9月末まで (2023-09-30T15:00:00Z is 10-01 JST)",
        P1, [pay("P1", "2023-09-30T15:00:00Z")], None, [("outside_window", None)],
        id="phase1-after-pay_until-utc"),
    row("seed 004 L25: 令和4年1月1日以降も引き続き、上限(5,000円分)までポイントの付与を受けることができます",
        P1, [pay("P1", "2020-10-01T10:00:00+09:00", txn="T1", amount=8000),
             pay("P1", "2022-06-01T10:00:00+09:00", txn="T2", amount=20000)],
        None, [("accepted", 2000), ("accepted", 3000)], id="phase1-keeps-earning-in-2022"),
    row("RULES.md Campaigns phase2_purchase payments ..2023-09-30",
        phase2_linked("P1"), [pay("P1", "2023-09-30T15:00:00Z")], None,
        [("outside_window", None)], id="phase2-after-pay_until-utc"),
    row("RULES.md Payments order: outside_window before cap_reached",
        P1, [pay("P1", D, txn="T1", amount=20000),
             pay("P1", "2023-10-01T10:00:00+09:00", txn="T2")], None,
        [("accepted", 5000), ("outside_window", None)], id="outside_window>cap_reached"),
    # --- cap and cumulative points -------------------------------------------------------------
    row("seed 001 L26: 20,000円をチャージする。↠後日5,000円分のマイナポイント; seed 003 L33",
        P1, [pay("P1", D, amount=20000)], None, [("accepted", 5000)], id="20000-gives-5000"),
    row("seed 001 L28: 30,000円の商品を購入する。↠後日5,000円分 (cap 5,000: seed 001 L24)",
        P1, [pay("P1", D, amount=30000, method="purchase")], None, [("accepted", 5000)],
        id="30000-gives-5000"),
    row("RULES.md Payments: cap_reached once points are at the cap; seed 001 L221: 上限",
        P1, [pay("P1", D, txn="T1", amount=20000), pay("P1", D, txn="T2", amount=1000)], None,
        [("accepted", 5000), ("cap_reached", None)], id="cap_reached"),
    row("RULES.md Payments: cumulative; 3 x 333 yen -> floor(999 x 25 / 100) = 249, grants are "
        "the changes 83, 83, 83",
        P1, [pay("P1", _at(10), txn="T1", amount=333), pay("P1", _at(11), txn="T2", amount=333),
             pay("P1", _at(12), txn="T3", amount=333)],
        None, [("accepted", 83), ("accepted", 83), ("accepted", 83)], id="3x333"),
    row("RULES.md Payments: never rounded per payment (4 x 1 yen: floor(0.25), floor(0.5), "
        "floor(0.75) = 0, then floor(1.0) = 1); no grant line when the change is 0",
        P1, [pay("P1", _at(10), txn="T1", amount=1), pay("P1", _at(11), txn="T2", amount=1),
             pay("P1", _at(12), txn="T3", amount=1), pay("P1", _at(13), txn="T4", amount=1)],
        None, [("accepted", None), ("accepted", None), ("accepted", None), ("accepted", 1)],
        id="4x1-yen"),
    row("RULES.md Payments: the payment that crosses the cap gets the rest of it",
        P1, [pay("P1", _at(10), txn="T1", amount=15000), pay("P1", _at(11), txn="T2", amount=10000),
             pay("P1", _at(12), txn="T3", amount=10000)],
        None, [("accepted", 3750), ("accepted", 1250), ("cap_reached", None)],
        id="crossing-the-cap"),
    row("RULES.md Payments: one point short of the cap is not at the cap (19,996 -> 4,999; +4 -> 1)",
        P1, [pay("P1", _at(10), txn="T1", amount=19996), pay("P1", _at(11), txn="T2", amount=4)],
        None, [("accepted", 4999), ("accepted", 1)], id="one-short-of-cap"),
    row("seed 004 L23: 付与率25%、上限5,000円分 (phase2_purchase grants carry their campaign)",
        phase2_linked("P1"), [pay("P1", "2022-11-10T10:00:00+09:00", amount=20000)], None,
        [("accepted", 5000)], id="phase2_purchase-20000"),
    # --- refunds -------------------------------------------------------------------------------
    row("RULES.md Payments: refund of an unknown transaction",
        P1, [refund("P1", D, txn="nope")], None, [("unknown_transaction", None)],
        id="unknown_transaction"),
    row("RULES.md Payments: refund naming the transaction with another account is unknown (choice)",
        P1, [pay("P1", D, txn="T1"), refund("P1", _at(20), txn="T1", account="acct-2")], None,
        [("accepted", 250), ("unknown_transaction", None)], id="refund-other-account"),
    row("RULES.md Payments: a not_linked_service payment is not remembered, so its refund is "
        "unknown_transaction (choice)",
        P1, [pay("P1", D, txn="T1", account="acct-2"),
             refund("P1", _at(20), txn="T1", account="acct-2")], None,
        [("not_linked_service", None), ("unknown_transaction", None)],
        id="refund-of-unlinked-payment"),
    row("RULES.md Payments: refund_exceeds_payment",
        P1, [pay("P1", D, txn="T1", amount=1000), refund("P1", _at(20), txn="T1", amount=1001)],
        None, [("accepted", 250), ("refund_exceeds_payment", None)], id="refund_exceeds_payment"),
    row("RULES.md Payments: 'more than what remains of it' (partial refunds; clawbacks are the "
        "changes of the total)",
        P1, [pay("P1", D, txn="T1", amount=1000),
             refund("P1", _at(20), txn="T1", amount=600),
             refund("P1", _at(21), txn="T1", amount=500),
             refund("P1", _at(22), txn="T1", amount=400),
             refund("P1", _at(23), txn="T1", amount=1)],
        None,
        [("accepted", 250), ("accepted", -150), ("refund_exceeds_payment", None),
         ("accepted", -100), ("refund_exceeds_payment", None)],
        id="partial-refunds"),
    row("RULES.md Payments: a clawback is a negative grant (20,000 refunded in full)",
        P1, [pay("P1", D, txn="T1", amount=20000), refund("P1", _at(20), txn="T1", amount=20000)],
        None, [("accepted", 5000), ("accepted", -5000)], id="full-clawback"),
    row("RULES.md Payments: S falls, total stays at the cap: no grant line; then a real clawback",
        P1, [pay("P1", D, txn="T1", amount=30000),
             refund("P1", _at(20), txn="T1", amount=10000),
             refund("P1", _at(21), txn="T1", amount=5000)],
        None, [("accepted", 5000), ("accepted", None), ("accepted", -1250)],
        id="refund-above-cap"),
    row("RULES.md Payments: refund of a non-counted payment (before_link) gives no grant",
        P1, [pay("P1", "2020-07-31T10:00:00+09:00", txn="T1"),
             refund("P1", _at(20), txn="T1", amount=1000)],
        None, [("before_link", None), ("accepted", None)], id="refund-non-counted"),
    row("RULES.md Payments: refund of a cap_reached payment gives no grant; the counted one claws "
        "back",
        P1, [pay("P1", D, txn="T1", amount=20000), pay("P1", D, txn="T2", amount=10000),
             refund("P1", _at(20), txn="T2", amount=10000),
             refund("P1", _at(21), txn="T1", amount=20000)],
        None,
        [("accepted", 5000), ("cap_reached", None), ("accepted", None), ("accepted", -5000)],
        id="refund-cap_reached-payment"),
    row("RULES.md Payments: after a clawback, later payments earn again",
        P1, [pay("P1", D, txn="T1", amount=20000), refund("P1", _at(20), txn="T1", amount=20000),
             pay("P1", _at(21), txn="T2", amount=4000)],
        None, [("accepted", 5000), ("accepted", -5000), ("accepted", 1000)],
        id="earn-after-clawback"),
    row("RULES.md Payments: cumulative clawback (3 x 333 = 249; refunding 333 -> floor(666/4) = 166)",
        P1, [pay("P1", _at(10), txn="T1", amount=333), pay("P1", _at(11), txn="T2", amount=333),
             pay("P1", _at(12), txn="T3", amount=333),
             refund("P1", _at(20), txn="T2", amount=333)],
        None, [("accepted", 83), ("accepted", 83), ("accepted", 83), ("accepted", -83)],
        id="3x333-refund"),
    row("RULES.md Payments: a refund may come after the payment window closes (not checked)",
        P1, [pay("P1", D, txn="T1", amount=4000),
             refund("P1", "2024-01-10T10:00:00+09:00", txn="T1", amount=4000)],
        None, [("accepted", 1000), ("accepted", -1000)], id="refund-after-window"),
    # --- flat campaigns: 7,500 once, at link -------------------------------------------------
    row("RULES.md Linking: an accepted phase2_insurance link grants 7,500 at once; seed 002 L16, "
        "seed 004 L29: 7,500円分のポイントを付与",
        [*phase2_ready("P1"), insurance("P1", "2022-11-02T11:00:00+09:00")],
        [link("P1", "2022-11-03T10:00:00+09:00", "phase2_insurance")], None,
        [("accepted", 7500)], id="phase2_insurance-7500"),
    row("seed 002 L18, seed 004 L37: 公金受取口座の登録を行った方に7,500円分",
        [*phase2_ready("P1"), account_reg("P1", "2022-11-02T11:00:00+09:00")],
        [link("P1", "2022-11-03T10:00:00+09:00", "phase2_account")], None,
        [("accepted", 7500)], id="phase2_account-7500"),
    row("RULES.md Campaigns: 7,500 *once* (a repeat is already_linked, no second grant)",
        [*phase2_ready("P1"), insurance("P1", "2022-11-02T11:00:00+09:00")],
        [link("P1", "2022-11-03T10:00:00+09:00", "phase2_insurance"),
         link("P1", "2022-11-04T10:00:00+09:00", "phase2_insurance")], None,
        [("accepted", 7500), ("already_linked", None)], id="flat-once"),
    row("RULES.md Linking: a refused flat link grants nothing",
        phase2_ready("P1"), [link("P1", "2022-11-03T10:00:00+09:00", "phase2_account")], None,
        [("not_registered", None)], id="flat-refused"),
    row("RULES.md Campaigns: the three phase-2 campaigns are separate (5,000 + 7,500 + 7,500); "
        "seed 004 L9: 1人当たり最大2万円分",
        [*phase2_ready("P1"), insurance("P1", "2022-11-02T11:00:00+09:00"),
         account_reg("P1", "2022-11-02T11:00:00+09:00")],
        [link("P1", "2022-11-03T10:00:00+09:00", "phase2_purchase"),
         link("P1", "2022-11-03T10:00:00+09:00", "phase2_insurance"),
         link("P1", "2022-11-03T10:00:00+09:00", "phase2_account"),
         pay("P1", "2022-11-10T10:00:00+09:00", amount=30000)],
        None,
        [("accepted", None), ("accepted", 7500), ("accepted", 7500), ("accepted", 5000)],
        id="phase2-total-20000"),
]


@pytest.mark.parametrize(("src", "setup", "steps", "cfg", "expected"), PAYMENTS)
def test_payments(src, setup, steps, cfg, expected):
    _, got = _run(setup, steps, cfg)
    assert got == expected, src


def test_grant_fields_and_placement():
    """CONTRACT.md Outcomes: a grant names event, person, campaign, service and points, and
    follows its event's decision directly."""
    p = pay("P1", D, txn="T1", amount=20000)
    r = refund("P1", _at(20), txn="T1", amount=20000)
    outcomes = simulate([*P1, p, r])
    js = as_json(outcomes)
    for ev, points in ((p, 5000), (r, -5000)):
        i = next(k for k, o in enumerate(js) if o["kind"] == "decision" and o["event_id"] == ev["event_id"])
        g = js[i + 1]
        assert list(g)[:6] == ["kind", "event_id", "person_id", "campaign", "service_id", "points"]
        assert {k: g[k] for k in list(g)[:6]} == {
            "kind": "grant", "event_id": ev["event_id"], "person_id": "P1",
            "campaign": "phase1", "service_id": "demo-pay", "points": points,
        }


@pytest.mark.parametrize(
    ("src", "campaign", "register"),
    [
        row("seed 004 L29", "phase2_insurance", insurance, id="insurance"),
        row("seed 004 L37", "phase2_account", account_reg, id="account"),
    ],
)
def test_flat_grant_fields(src, campaign, register):
    req = link("P1", "2022-11-03T10:00:00+09:00", campaign, account="acct-flat")
    outcomes = simulate([*phase2_ready("P1"), register("P1", "2022-11-02T11:00:00+09:00"), req])
    js = as_json(outcomes)
    assert js[-2]["kind"] == "decision" and js[-2]["event_id"] == req["event_id"], src
    assert js[-1]["kind"] == "grant"
    assert (js[-1]["event_id"], js[-1]["campaign"], js[-1]["service_id"], js[-1]["points"]) == (
        req["event_id"], campaign, "demo-pay", 7500,
    )


# --- configuration overrides (CONTRACT.md "Configuration") -------------------------------------

OVERRIDES = [
    row("CONTRACT.md Configuration: cap is configuration (phase1 cap 3,000)",
        {"campaigns": {"phase1": {"cap": 3000}}}, P1,
        [pay("P1", D, txn="T1", amount=20000), pay("P1", D, txn="T2", amount=100)],
        [("accepted", 3000), ("cap_reached", None)], id="phase1-cap-3000"),
    row("CONTRACT.md Configuration: rate_percent is configuration (10%)",
        {"campaigns": {"phase1": {"rate_percent": 10}}}, P1,
        [pay("P1", D, amount=20000)], [("accepted", 2000)], id="rate-10"),
    row("seed 003 L20: 令和3年9月末までにチャージまたはお買い物 (the 2021 calendar: pay_until 2021-09-30)",
        {"campaigns": {"phase1": {"pay_until": dt.date(2021, 9, 30)}}}, P1,
        [pay("P1", "2021-09-30T23:59:59+09:00", txn="T1", amount=400),
         pay("P1", "2021-09-30T15:00:00Z", txn="T2", amount=400)],
        [("accepted", 100), ("outside_window", None)], id="pay_until-2021-09-30"),
    row("CONTRACT.md Configuration: flat campaigns: cap is the grant (phase2_insurance 8,000)",
        {"campaigns": {"phase2_insurance": {"cap": 8000}}},
        [*phase2_ready("P1"), insurance("P1", "2022-11-02T11:00:00+09:00")],
        [link("P1", "2022-11-03T10:00:00+09:00", "phase2_insurance")],
        [("accepted", 8000)], id="flat-cap-8000"),
    row("CONTRACT.md Configuration: a campaign table sets only what it changes (phase2 untouched)",
        {"campaigns": {"phase1": {"cap": 3000}}}, phase2_linked("P1"),
        [pay("P1", "2022-11-10T10:00:00+09:00", amount=20000)], [("accepted", 5000)],
        id="other-campaign-keeps-defaults"),
]


@pytest.mark.parametrize(("src", "raw", "setup", "steps", "expected"), OVERRIDES)
def test_payment_config_overrides(src, raw, setup, steps, expected):
    _, got = _run(setup, steps, config(raw))
    assert got == expected, src


def test_cap_override_from_toml_file(tmp_path):
    """CONTRACT.md Configuration: the same override read from a TOML file."""
    from tests.builders import config_from_toml

    cfg = config_from_toml("[campaigns.phase1]\ncap = 3000\nrate_percent = 50\n", tmp_path)
    _, got = _run(P1, [pay("P1", D, txn="T1", amount=2000), pay("P1", D, txn="T2", amount=8000)],
                  cfg)
    assert got == [("accepted", 1000), ("accepted", 2000)]
