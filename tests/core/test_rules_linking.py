"""Linking a service (RULES.md "Linking a service (申込)"): every reason, windows, the check order,
and the `account_shared` alert."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.builders import (
    account_reg,
    alerts,
    as_json,
    card,
    config,
    decision_for,
    decisions,
    grants,
    insurance,
    link,
    phase1_ready,
    phase2_ready,
    prereg,
    renew,
    reserve,
    row,
    simulate,
    suspend,
    verdict,
    verdicts,
)

ALL = ["phase1", "phase2_purchase", "phase2_insurance", "phase2_account"]

# A catalog replacing the default one (CONTRACT.md: "a file that names services replaces it whole").
CATALOG = config(
    {
        "services": [
            {"id": "demo-pay", "campaigns": ALL},
            {"id": "late-pay", "campaigns": ALL, "selectable_from": dt.date(2020, 9, 1)},
            {"id": "p1-only", "campaigns": ["phase1"]},
            {"id": "prereg-pay", "campaigns": ALL, "preregistration_required": True},
            {
                "id": "late-prereg-pay",
                "campaigns": ALL,
                "selectable_from": dt.date(2020, 9, 1),
                "preregistration_required": True,
            },
        ]
    }
)

T1 = "2020-08-01T10:00:00+09:00"  # inside phase1's link window
T2 = "2022-11-03T10:00:00+09:00"  # inside every phase-2 link window
P1_READY = phase1_ready("P1")
P2_READY = phase2_ready("P1")
P2_REGISTERED = [*P2_READY, insurance("P1", "2022-11-02T11:00:00+09:00"),
                 account_reg("P1", "2022-11-02T11:00:00+09:00")]


def _minor_ready(birth: str, card_at: str, applied: str) -> list[dict]:
    return [card("P1", card_at, applied=applied, birth=birth), reserve("P1", card_at)]


# (src, events before, the link request, config or None, expected verdict of the request)
REASONS = [
    # --- 1. the certificate checks ----------------------------------------------------------
    row("RULES.md Linking 1 (no_card); seed 002 L35: 手続きに必要となるのは次の4点です (L36: マイナンバーカード)",
        [], link("P1", T1), None, "no_card", id="no_card"),
    row("RULES.md Linking 1 (card_suspended); seed 000 L115: 一時利用停止",
        [*P1_READY, suspend("P1", "2020-07-01T10:00:00+09:00")], link("P1", T1), None,
        "card_suspended", id="card_suspended"),
    row("RULES.md Linking 1 (certificate_expired); seed 002 L31: 「電子証明書」が有効期限内であること",
        phase1_ready("P1", expires="2020-07-15T00:00:00+09:00"), link("P1", T1), None,
        "certificate_expired", id="certificate_expired"),
    row("RULES.md Linking 1 (renewal_wait); seed 000 L19",
        [*P1_READY, renew("P1", "2020-08-01T09:00:00+09:00")], link("P1", T1), None,
        "renewal_wait", id="renewal_wait"),
    # --- 2. no_mykey --------------------------------------------------------------------------
    row("RULES.md Linking 2 (no_mykey); seed 003 L40: (2)マイナポイントの予約(マイキーIDの設定) "
        "(3)マイナポイントの申込み が必要",
        [card("P1")], link("P1", T1), None, "no_mykey", id="no_mykey"),
    # --- 3. link windows, JST calendar days ------------------------------------------------
    row("RULES.md Campaigns phase1 link 2020-07-01..; seed 000 L99: 申込…は、2020年7月1日から開始",
        P1_READY, link("P1", "2020-06-30T23:59:59+09:00"), None, "outside_window",
        id="phase1-before-start"),
    row("seed 000 L99: 2020年7月1日から (2020-06-30T15:00:00Z is 07-01 00:00 JST)",
        P1_READY, link("P1", "2020-06-30T15:00:00Z"), None, "accepted", id="phase1-start-jst"),
    row("RULES.md Campaigns phase1 link ..2021-12-31; seed 004 L25: 令和3年12月末までにマイナポイント第1弾に申し込んだ方",
        P1_READY, link("P1", "2021-12-31T23:59:59+09:00"), None, "accepted",
        id="phase1-last-second"),
    row("RULES.md Campaigns phase1 link ..2021-12-31: 2021-12-31T15:00:00Z = 2022-01-01 00:00 JST",
        P1_READY, link("P1", "2021-12-31T15:00:00Z"), None, "outside_window",
        id="phase1-after-end-utc"),
    row("RULES.md Campaigns phase2_purchase link 2022-01-01..; seed 004 L9: 令和4年1月1日から開始",
        P1_READY, link("P1", "2021-12-31T14:59:59Z", "phase2_purchase"), None, "outside_window",
        id="phase2_purchase-before-start-utc"),
    row("seed 004 L9: 令和4年1月1日から (2021-12-31T15:00:00Z is 2022-01-01 JST)",
        P1_READY, link("P1", "2021-12-31T15:00:00Z", "phase2_purchase"), None, "accepted",
        id="phase2_purchase-start-utc"),
    row("RULES.md Campaigns ..2023-09-30; seed 002 L11: 申込期限は令和5年9月末まで",
        P2_READY, link("P1", "2023-09-30T23:59:59+09:00", "phase2_purchase"), None, "accepted",
        id="phase2_purchase-last-second"),
    row("seed 002 L11: 令和5年9月末まで (2023-09-30T15:00:00Z is 10-01 JST)",
        P2_READY, link("P1", "2023-09-30T15:00:00Z", "phase2_purchase"), None, "outside_window",
        id="phase2_purchase-after-end-utc"),
    row("RULES.md Campaigns phase2_insurance link 2022-06-30..; seed 004 L11: 令和4年6月30日からは…"
        "健康保険証としての利用登録を行った方…ポイント申込が開始",
        [*phase1_ready("P1"), insurance("P1", "2022-06-01T10:00:00+09:00")],
        link("P1", "2022-06-29T23:59:59+09:00", "phase2_insurance"), None, "outside_window",
        id="phase2_insurance-before-start"),
    row("seed 004 L31: 令和4年6月30日からポイントの申込が開始されました",
        [*phase1_ready("P1"), insurance("P1", "2022-06-01T10:00:00+09:00")],
        link("P1", "2022-06-29T15:00:00Z", "phase2_insurance"), None, "accepted",
        id="phase2_insurance-start-utc"),
    row("seed 004 L41: 令和4年6月30日からポイントの申込が開始されました (section 3, account registration)",
        [*phase1_ready("P1"), account_reg("P1", "2022-06-01T10:00:00+09:00")],
        link("P1", "2022-06-29T23:59:59+09:00", "phase2_account"), None, "outside_window",
        id="phase2_account-before-start"),
    row("RULES.md Campaigns phase2_account link ..2023-09-30",
        P2_REGISTERED, link("P1", "2023-09-30T15:00:00Z", "phase2_account"), None,
        "outside_window", id="phase2_account-after-end-utc"),
    # --- 4. card deadline ------------------------------------------------------------------
    row("RULES.md Campaigns phase1 card by 2021-04-30; seed 003 L21: 令和3年4月末までにマイナンバーカードを"
        "申請いただく必要があります",
        _minor_ready("1980-01-01", "2021-06-01T10:00:00+09:00", "2021-04-30"),
        link("P1", "2021-08-01T10:00:00+09:00"), None, "accepted", id="phase1-card-on-deadline"),
    row("seed 003 L21: 令和3年4月末までに…申請 (applied 2021-05-01)",
        _minor_ready("1980-01-01", "2021-06-01T10:00:00+09:00", "2021-05-01"),
        link("P1", "2021-08-01T10:00:00+09:00"), None, "card_applied_too_late",
        id="phase1-card-day-after-deadline"),
    row("RULES.md Campaigns phase2 card by 2023-02-28; seed 002 L10: 令和5年2月末までにマイナンバーカードを"
        "申請した方",
        _minor_ready("1980-01-01", "2023-04-01T10:00:00+09:00", "2023-02-28"),
        link("P1", "2023-04-02T10:00:00+09:00", "phase2_purchase"), None, "accepted",
        id="phase2-card-on-deadline"),
    row("seed 004 L19: 令和5年2月末までにカード申請を行った方が対象 (applied 2023-03-01)",
        _minor_ready("1980-01-01", "2023-04-01T10:00:00+09:00", "2023-03-01"),
        link("P1", "2023-04-02T10:00:00+09:00", "phase2_purchase"), None, "card_applied_too_late",
        id="phase2-card-day-after-deadline"),
    row("seed 004 L37: 令和5年2月末までマイナンバーカードの申請 (phase2_account too)",
        [*_minor_ready("1980-01-01", "2023-04-01T10:00:00+09:00", "2023-03-01"),
         account_reg("P1", "2023-04-01T11:00:00+09:00")],
        link("P1", "2023-04-02T10:00:00+09:00", "phase2_account"), None, "card_applied_too_late",
        id="phase2_account-card-too-late"),
    # --- 5. proxies: under 15 on the request's JST date -----------------------------------
    row("RULES.md Linking 5; seed 002 L23: 15歳未満の場合を除き、ご本人不在の申込み手続きは認められておりません "
        "(the day before the 15th birthday, 23:59:59 JST)",
        _minor_ready("2007-03-15", "2022-01-10T10:00:00+09:00", "2021-12-01"),
        link("P1", "2022-03-14T23:59:59+09:00", "phase2_purchase", applicant="proxy"), None,
        "accepted", id="proxy-age-14-last-second"),
    row("seed 002 L23: on the 15th birthday (2022-03-14T15:00:00Z = 03-15 00:00 JST) a proxy is refused",
        _minor_ready("2007-03-15", "2022-01-10T10:00:00+09:00", "2021-12-01"),
        link("P1", "2022-03-14T15:00:00Z", "phase2_purchase", applicant="proxy"), None,
        "proxy_not_allowed", id="proxy-15th-birthday-utc"),
    row("seed 002 L23: 15歳未満の場合を除き (on the birthday, JST)",
        _minor_ready("2007-03-15", "2022-01-10T10:00:00+09:00", "2021-12-01"),
        link("P1", "2022-03-15T10:00:00+09:00", "phase2_purchase", applicant="proxy"), None,
        "proxy_not_allowed", id="proxy-15th-birthday"),
    row("seed 002 L22: 申込みはご本人による手続きが原則 (self at 15 is fine)",
        _minor_ready("2007-03-15", "2022-01-10T10:00:00+09:00", "2021-12-01"),
        link("P1", "2022-03-15T10:00:00+09:00", "phase2_purchase", applicant="self"), None,
        "accepted", id="self-at-15"),
    row("seed 002 L23: an adult's application by a proxy is refused",
        P1_READY, link("P1", T1, applicant="proxy"), None, "proxy_not_allowed", id="proxy-adult"),
    row("CONTRACT.md: applicant defaults to self",
        P1_READY, link("P1", T1), None, "accepted", id="applicant-default-self"),
    row("seed 002 L23 + 年齢計算ニ関スル法律 (choice, see streams.core.timeutil.age_on): born 02-29, "
        "still 14 on 2023-02-28",
        _minor_ready("2008-02-29", "2023-02-01T10:00:00+09:00", "2023-01-10"),
        link("P1", "2023-02-28T10:00:00+09:00", "phase2_purchase", applicant="proxy"), None,
        "accepted", id="proxy-feb29-birthday-feb28"),
    row("seed 002 L23 (choice): born 02-29, 15 on 2023-03-01 in a common year",
        _minor_ready("2008-02-29", "2023-02-01T10:00:00+09:00", "2023-01-10"),
        link("P1", "2023-03-01T10:00:00+09:00", "phase2_purchase", applicant="proxy"), None,
        "proxy_not_allowed", id="proxy-feb29-birthday-mar1"),
    # --- 6. the service catalog ------------------------------------------------------------
    row("RULES.md Linking 6 (unknown_service); seed 001 L195: 登録キャッシュレス決済サービス事業者",
        P1_READY, link("P1", T1, service="nope-pay"), None, "unknown_service",
        id="unknown_service"),
    row("RULES.md Linking 6 (service_not_selectable: not in this campaign)",
        P2_READY, link("P1", T2, "phase2_purchase", service="p1-only"), CATALOG,
        "service_not_selectable", id="not-in-campaign"),
    row("RULES.md Linking 6 (in this campaign is fine)",
        P1_READY, link("P1", T1, service="p1-only"), CATALOG, "accepted", id="p1-only-in-phase1"),
    row("seed 000 L89: 申込時点によっては選択できないキャッシュレス決済サービスがあります",
        P1_READY, link("P1", "2020-08-31T14:59:59Z", service="late-pay"), CATALOG,
        "service_not_selectable", id="not-yet-selectable"),
    row("seed 001 L60: 今後申し込み可能キャッシュレス決済サービス (selectable from 09-01 JST = 08-31T15:00Z)",
        P1_READY, link("P1", "2020-08-31T15:00:00Z", service="late-pay"), CATALOG, "accepted",
        id="selectable-from-jst-day"),
    # --- 7. preregistration ----------------------------------------------------------------
    row("RULES.md Linking 7; seed 000 L90: 事前の登録手続が必要な場合; seed 002 L5: ポイント申込前に事前の登録が必要",
        P1_READY, link("P1", T1, service="prereg-pay"), CATALOG, "preregistration_missing",
        id="preregistration_missing"),
    row("seed 002 L5: 事前の登録 done for this person, service and account",
        [*P1_READY, prereg("P1", service="prereg-pay")], link("P1", T1, service="prereg-pay"),
        CATALOG, "accepted", id="preregistered"),
    row("RULES.md Linking 7: preregistration of another account does not count",
        [*P1_READY, prereg("P1", service="prereg-pay", account="other")],
        link("P1", T1, service="prereg-pay"), CATALOG, "preregistration_missing",
        id="prereg-other-account"),
    row("RULES.md Linking 7: preregistration with another service does not count",
        [*P1_READY, prereg("P1", service="demo-pay")], link("P1", T1, service="prereg-pay"),
        CATALOG, "preregistration_missing", id="prereg-other-service"),
    row("RULES.md Linking 7: another person's preregistration does not count",
        [*P1_READY, prereg("P9", service="prereg-pay")], link("P1", T1, service="prereg-pay"),
        CATALOG, "preregistration_missing", id="prereg-other-person"),
    row("seed 004 L82: 事前登録が必要な場合 (a service without the requirement needs none)",
        P1_READY, link("P1", T1, service="demo-pay"), CATALOG, "accepted", id="no-prereg-needed"),
    # --- 8. phase1_applied -------------------------------------------------------------------
    row("RULES.md Linking 8; seed 002 L13: マイナポイント第1弾に申し込んでいない方に; seed 004 L21",
        [*P1_READY, link("P1", T1)], link("P1", T2, "phase2_purchase", account="acct-2"), None,
        "phase1_applied", id="phase1_applied"),
    row("seed 004 L21: 第1弾に申し込んでいない方 (phase1 applied with the same service and account)",
        [*P1_READY, link("P1", T1)], link("P1", T2, "phase2_purchase"), None,
        "phase1_applied", id="phase1_applied-same-account"),
    row("RULES.md Linking 8: only an *accepted* phase1 link blocks phase2_purchase",
        [*P1_READY, link("P1", T1, service="nope-pay")], link("P1", T2, "phase2_purchase"), None,
        "accepted", id="refused-phase1-does-not-block"),
    row("seed 004 L33: 新規に取得された方向けのポイント…を申込済みの方もあらためて申込が必要です "
        "(phase1 does not block phase2_insurance)",
        [*P1_READY, link("P1", T1), insurance("P1", "2022-07-01T10:00:00+09:00")],
        link("P1", T2, "phase2_insurance"), None, "accepted", id="phase1-then-insurance"),
    # --- 9. not_registered -------------------------------------------------------------------
    row("RULES.md Linking 9; seed 002 L16: 健康保険証としての利用申込を行った方に",
        P2_READY, link("P1", T2, "phase2_insurance"), None, "not_registered",
        id="insurance-not-registered"),
    row("RULES.md Linking 9; seed 002 L18: 公金受取口座の登録を行った方に",
        P2_READY, link("P1", T2, "phase2_account"), None, "not_registered",
        id="account-not-registered"),
    row("RULES.md Linking 9: insurance registration does not count for phase2_account",
        [*P2_READY, insurance("P1", "2022-11-02T11:00:00+09:00")],
        link("P1", T2, "phase2_account"), None, "not_registered", id="wrong-registration"),
    row("RULES.md Linking 9: account registration does not count for phase2_insurance",
        [*P2_READY, account_reg("P1", "2022-11-02T11:00:00+09:00")],
        link("P1", T2, "phase2_insurance"), None, "not_registered", id="wrong-registration-2"),
    row("seed 004 L29: 健康保険証としての利用申込を行った方 (registered earlier)",
        [*P2_READY, insurance("P1", "2022-11-02T11:00:00+09:00")],
        link("P1", T2, "phase2_insurance"), None, "accepted", id="insurance-registered"),
    row("seed 004 L37: 公金受取口座の登録を行った方 (registered earlier)",
        [*P2_READY, account_reg("P1", "2022-11-02T11:00:00+09:00")],
        link("P1", T2, "phase2_account"), None, "accepted", id="account-registered"),
    # --- 10. one service per campaign ---------------------------------------------------------
    row("RULES.md Linking 10 (already_linked: a harmless repeat)",
        [*P1_READY, link("P1", T1)], link("P1", "2020-08-02T10:00:00+09:00"), None,
        "already_linked", id="already_linked"),
    row("RULES.md Linking 10; seed 003 L89: 一度申し込んだキャッシュレス決済サービスを変更することはできません",
        [*P1_READY, link("P1", T1)],
        link("P1", "2020-08-02T10:00:00+09:00", service="p1-only", account="acct-9"), CATALOG,
        "service_change_not_allowed", id="service_change_not_allowed"),
    row("seed 003 L143: 変更することはできません (same service, another account is a change too)",
        [*P1_READY, link("P1", T1)], link("P1", "2020-08-02T10:00:00+09:00", account="acct-2"),
        None, "service_change_not_allowed", id="change-of-account"),
    row("seed 001 L56: キャッシュレス決済サービスを1種類選択 (per campaign: phase2_insurance after "
        "phase2_account on the same account is allowed)",
        [*P2_REGISTERED, link("P1", T2, "phase2_account")], link("P1", T2, "phase2_insurance"),
        None, "accepted", id="same-account-other-campaign"),
    row("RULES.md Linking 10: phase2_insurance with a different service from phase2_account is fine",
        [*P2_REGISTERED, link("P1", T2, "phase2_account")],
        link("P1", T2, "phase2_insurance", account="acct-2"), None, "accepted",
        id="other-account-other-campaign"),
    # --- 11. account_linked_elsewhere ----------------------------------------------------------
    row("RULES.md Linking 11; seed 002 L7: 申込者本人のマイナンバーカードに別人の決済サービスが紐付き",
        [*phase1_ready("P0"), link("P0", T1), *P1_READY], link("P1", T1), None,
        "account_linked_elsewhere", id="account_linked_elsewhere"),
    row("RULES.md Linking 11: 'in any campaign' (held via phase1, requested for phase2_insurance)",
        [*phase1_ready("P0"), link("P0", T1), *P2_REGISTERED],
        link("P1", T2, "phase2_insurance"), None, "account_linked_elsewhere",
        id="elsewhere-other-campaign"),
    row("RULES.md Linking 11: same account id at another service is another account",
        [*phase1_ready("P0"), link("P0", T1, service="p1-only"), *P1_READY], link("P1", T1),
        CATALOG, "accepted", id="same-account-id-other-service"),
    row("RULES.md Linking 11: a refused link does not take the account",
        [*phase1_ready("P0"), link("P0", T1, applicant="proxy"), *P1_READY], link("P1", T1),
        None, "accepted", id="refused-link-takes-no-account"),
]


@pytest.mark.parametrize(("src", "before", "request_", "cfg", "expected"), REASONS)
def test_link_reason(src, before, request_, cfg, expected):
    outcomes = simulate([*before, request_], cfg)
    assert verdict(decision_for(outcomes, request_["event_id"])) == expected, src
    # The setup did what the row says: facts and reservations were all accepted (a few rows
    # set up a deliberately refused link).
    for ev in before:
        if ev["type"] != "service.linked":
            assert decision_for(outcomes, ev["event_id"]).accepted, (ev, src)
    # Only account_linked_elsewhere raises an alert.
    got_alerts = [a for a in alerts(outcomes) if a.event_id == request_["event_id"]]
    assert len(got_alerts) == (1 if expected == "account_linked_elsewhere" else 0), got_alerts


# The check order: each row fails two (or more) checks; the earliest must be the reason.
ORDER = [
    row("RULES.md Linking order: no_card before no_mykey and outside_window",
        [], link("P1", "2020-06-15T10:00:00+09:00", service="nope-pay"), None, "no_card",
        id="no_card>no_mykey>outside_window"),
    row("RULES.md Linking order 1: card_suspended before certificate_expired",
        [*phase1_ready("P1", expires="2020-07-15T00:00:00+09:00"),
         suspend("P1", "2020-07-01T10:00:00+09:00")],
        link("P1", T1), None, "card_suspended", id="card_suspended>certificate_expired"),
    row("RULES.md Linking order 1: certificate_expired before renewal_wait",
        [*P1_READY, renew("P1", "2020-08-01T09:00:00+09:00", expires="2020-08-01T09:30:00+09:00")],
        link("P1", T1), None, "certificate_expired", id="certificate_expired>renewal_wait"),
    row("RULES.md Linking order 1-2: renewal_wait before no_mykey",
        [card("P1"), renew("P1", "2020-08-01T09:00:00+09:00")], link("P1", T1), None,
        "renewal_wait", id="renewal_wait>no_mykey"),
    row("RULES.md Linking order 2-3: no_mykey before outside_window",
        [card("P1")], link("P1", "2020-06-15T10:00:00+09:00"), None, "no_mykey",
        id="no_mykey>outside_window"),
    row("RULES.md Linking order 3-4: outside_window before card_applied_too_late",
        _minor_ready("1980-01-01", "2021-06-01T10:00:00+09:00", "2021-05-01"),
        link("P1", "2022-01-05T10:00:00+09:00"), None, "outside_window",
        id="outside_window>card_applied_too_late"),
    row("RULES.md Linking order 4-5: card_applied_too_late before proxy_not_allowed",
        _minor_ready("1980-01-01", "2021-06-01T10:00:00+09:00", "2021-05-01"),
        link("P1", "2021-08-01T10:00:00+09:00", applicant="proxy"), None,
        "card_applied_too_late", id="card_applied_too_late>proxy_not_allowed"),
    row("RULES.md Linking order 5-6: proxy_not_allowed before unknown_service",
        P1_READY, link("P1", T1, service="nope-pay", applicant="proxy"), None,
        "proxy_not_allowed", id="proxy_not_allowed>unknown_service"),
    row("RULES.md Linking order 5-6: proxy_not_allowed before service_not_selectable",
        P2_READY, link("P1", T2, "phase2_purchase", service="p1-only", applicant="proxy"),
        CATALOG, "proxy_not_allowed", id="proxy_not_allowed>service_not_selectable"),
    row("RULES.md Linking order 6-7: service_not_selectable before preregistration_missing",
        P1_READY, link("P1", T1, service="late-prereg-pay"), CATALOG, "service_not_selectable",
        id="service_not_selectable>preregistration_missing"),
    row("RULES.md Linking order 7-8: preregistration_missing before phase1_applied",
        [*P1_READY, link("P1", T1)], link("P1", T2, "phase2_purchase", service="prereg-pay"),
        CATALOG, "preregistration_missing", id="preregistration_missing>phase1_applied"),
    row("RULES.md Linking order 7-9: preregistration_missing before not_registered",
        P2_READY, link("P1", T2, "phase2_insurance", service="prereg-pay"), CATALOG,
        "preregistration_missing", id="preregistration_missing>not_registered"),
    row("RULES.md Linking order 8-10: phase1_applied before service_change_not_allowed "
        "(phase1 link window extended by config so both links exist)",
        [*phase1_ready("P1"), link("P1", "2022-03-01T10:00:00+09:00", "phase2_purchase"),
         link("P1", "2022-04-01T10:00:00+09:00", "phase1", account="acct-p1")],
        link("P1", "2022-05-01T10:00:00+09:00", "phase2_purchase", account="acct-2"),
        config({"campaigns": {"phase1": {"link_until": dt.date(2022, 12, 31)}}}),
        "phase1_applied", id="phase1_applied>service_change_not_allowed"),
    row("RULES.md Linking order 8-11: phase1_applied before account_linked_elsewhere",
        [*phase1_ready("P0"), link("P0", T1, account="held"), *P1_READY, link("P1", T1)],
        link("P1", T2, "phase2_purchase", account="held"), None, "phase1_applied",
        id="phase1_applied>account_linked_elsewhere"),
    row("RULES.md Linking order 9-11: not_registered before account_linked_elsewhere",
        [*phase1_ready("P0"), link("P0", T1, account="held"), *P2_READY],
        link("P1", T2, "phase2_insurance", account="held"), None, "not_registered",
        id="not_registered>account_linked_elsewhere"),
    row("RULES.md Linking order 10-11: service_change_not_allowed before account_linked_elsewhere",
        [*phase1_ready("P0"), link("P0", T1, account="held"), *P1_READY, link("P1", T1)],
        link("P1", "2020-08-02T10:00:00+09:00", account="held"), None,
        "service_change_not_allowed", id="service_change_not_allowed>account_linked_elsewhere"),
    row("RULES.md Linking order 3-11: outside_window before account_linked_elsewhere",
        [*phase1_ready("P0"), link("P0", T1, account="held"), *P1_READY],
        link("P1", "2022-01-05T10:00:00+09:00", account="held"), None, "outside_window",
        id="outside_window>account_linked_elsewhere"),
]


@pytest.mark.parametrize(("src", "before", "request_", "cfg", "expected"), ORDER)
def test_link_check_order(src, before, request_, cfg, expected):
    outcomes = simulate([*before, request_], cfg)
    for ev in before:
        assert decision_for(outcomes, ev["event_id"]).accepted, (ev, src)
    assert verdict(decision_for(outcomes, request_["event_id"])) == expected, src
    # Only the last check (account_linked_elsewhere) may raise an alert.
    assert not [a for a in alerts(outcomes) if a.event_id == request_["event_id"]]


def test_account_shared_alert_fields():
    """RULES.md Linking 11: account_linked_elsewhere raises an account_shared alert naming the
    holder (seed 002 L6: マイナポイント誤紐付けについて); CONTRACT.md Outcomes: alert fields."""
    held = link("P0", T1, account="shared-acct")
    req = link("P1", "2020-08-03T10:00:00+09:00", account="shared-acct")
    outcomes = simulate([*phase1_ready("P0"), held, *P1_READY, req])
    d = decision_for(outcomes, req["event_id"])
    assert (d.accepted, d.reason) == (False, "account_linked_elsewhere")
    idx = outcomes.index(d)
    alert = outcomes[idx + 1]
    js = as_json([alert])[0]
    assert {k: js[k] for k in ("kind", "code", "event_id", "person_id", "service_id",
                               "service_account", "linked_person_id")} == {
        "kind": "alert",
        "code": "account_shared",
        "event_id": req["event_id"],
        "person_id": "P1",
        "service_id": "demo-pay",
        "service_account": "shared-acct",
        "linked_person_id": "P0",
    }
    assert list(js)[:3] == ["kind", "code", "event_id"]
    assert not [g for g in grants(outcomes) if g.event_id == req["event_id"]]


def test_account_stays_with_first_holder():
    """RULES.md Linking 11: first come first served in processing order; the refused person's
    request does not move the account, so a third person's alert still names the first holder."""
    events = [
        *phase1_ready("A"), *phase1_ready("B"), *phase1_ready("C"),
        link("B", "2020-08-02T10:00:00+09:00", account="x"),  # processed first, occurred later
        link("A", "2020-08-01T10:00:00+09:00", account="x"),
        link("C", "2020-08-03T10:00:00+09:00", account="x"),
        link("B", "2020-08-04T10:00:00+09:00", account="x"),  # B's repeat: already_linked
    ]
    outcomes = simulate(events)
    assert [verdict(d) for d in decisions(outcomes)][-4:] == [
        "accepted", "account_linked_elsewhere", "account_linked_elsewhere", "already_linked",
    ]
    assert [(a.person_id, a.linked_person_id) for a in alerts(outcomes)] == [("A", "B"), ("C", "B")]


def test_same_person_may_use_own_account_in_every_campaign():
    """RULES.md Linking 11: 'already linked to *another* person'; the holder itself is fine."""
    events = [
        *phase1_ready("P1"),
        link("P1", T1, "phase1"),
        insurance("P1", "2022-07-01T10:00:00+09:00"),
        account_reg("P1", "2022-07-01T10:00:00+09:00"),
        link("P1", T2, "phase2_insurance"),
        link("P1", T2, "phase2_account"),
    ]
    assert verdicts(events) == ["accepted"] * 7


@pytest.mark.parametrize(
    ("src", "link_until", "at", "expected"),
    [
        row("seed 004 L13: 申込期限が令和5年5月末に延長 (config link_until = 2023-05-31), last day",
            dt.date(2023, 5, 31), "2023-05-31T23:59:59+09:00", "accepted", id="last-day"),
        row("seed 004 L13: 令和5年5月末 (config), the next JST day is outside",
            dt.date(2023, 5, 31), "2023-05-31T15:00:00Z", "outside_window", id="day-after"),
    ],
)
def test_link_window_from_config(src, link_until, at, expected):
    cfg = config({"campaigns": {"phase2_purchase": {"link_until": link_until}}})
    req = link("P1", at, "phase2_purchase")
    outcomes = simulate([*phase2_ready("P1"), req], cfg)
    assert verdict(decision_for(outcomes, req["event_id"])) == expected, src
