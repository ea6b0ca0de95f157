"""Certificates (RULES.md "Certificates"): expiry, the renewal wait window, suspension.

Every scenario is run twice: as a reservation (`mykey.reserved`) and as a link request
(`service.linked`, after a reservation made while the certificate was fine), because RULES.md
applies the same four checks to both.
"""

from __future__ import annotations

import datetime as dt

import pytest

from tests.builders import (
    card,
    decision_for,
    link,
    renew,
    reserve,
    resume,
    row,
    simulate,
    suspend,
    verdict,
)

JST = dt.timezone(dt.timedelta(hours=9))


def _campaign_for(at: str) -> str:
    day = dt.datetime.fromisoformat(at.replace("Z", "+00:00")).astimezone(JST).date()
    return "phase1" if day <= dt.date(2021, 12, 31) else "phase2_purchase"


def _request(kind: str, at: str) -> dict:
    if kind == "reserve":
        return reserve("P1", at)
    return link("P1", at, _campaign_for(at))


def _scenario(kind: str, card_kw: dict, setup: list[dict], at: str) -> tuple[list[dict], str]:
    events = [card("P1", **card_kw)]
    if kind == "link":
        events.append(reserve("P1", "2020-06-02T10:00:00+09:00"))
    events.extend(setup)
    req = _request(kind, at)
    events.append(req)
    return events, req["event_id"]


EXPIRES_JUNE = {"expires": "2021-06-30T15:00:00Z"}  # = 2021-07-01 00:00:00 JST

# (src, card kwargs, events between card (+reservation) and the request, request time, expected)
CASES = [
    # --- expiry at the exact instant -------------------------------------------------------
    row(
        "RULES.md Certificates: refused at or after certificate_expires_at; seed 000 L23: "
        "証明書の有効期限が切れた後は,更新手続を行うまでは…予約などはできません",
        EXPIRES_JUNE, [], "2021-07-01T00:00:00+09:00", "certificate_expired",
        id="expired-at-exact-instant-other-offset",
    ),
    row(
        "RULES.md Certificates: at or after expiry is refused",
        EXPIRES_JUNE, [], "2021-06-30T15:00:00Z", "certificate_expired",
        id="expired-at-exact-instant-same-offset",
    ),
    row(
        "RULES.md Certificates: before expiry the certificate is usable; seed 002 L31: "
        "「電子証明書」が有効期限内であること",
        EXPIRES_JUNE, [], "2021-06-30T23:59:59+09:00", "accepted",
        id="one-second-before-expiry",
    ),
    row(
        "RULES.md Certificates: after expiry",
        EXPIRES_JUNE, [], "2021-08-01T10:00:00+09:00", "certificate_expired",
        id="long-after-expiry",
    ),
    row(
        "seed 000 L23: 更新手続を行うまでは…できません (renewal ends the refusal, after the wait)",
        EXPIRES_JUNE, [renew("P1", "2021-07-10T10:00:00+09:00")],
        "2021-07-11T10:00:00+09:00", "accepted",
        id="expired-then-renewed-after-wait",
    ),
    row(
        "seed 000 L19: 電子証明書の更新を行った場合、24時間以内は…できません (expired, renewed, in wait)",
        EXPIRES_JUNE, [renew("P1", "2021-07-10T10:00:00+09:00")],
        "2021-07-11T09:59:59+09:00", "renewal_wait",
        id="expired-then-renewed-inside-wait",
    ),
    # --- the 24-hour wait (requests before 2022-01-01) -------------------------------------
    row(
        "RULES.md Certificates: window from the renewal instant (inclusive); seed 000 L19",
        {}, [renew("P1", "2021-06-01T10:00:00+09:00")], "2021-06-01T10:00:00+09:00",
        "renewal_wait",
        id="24h-wait-at-renewal-instant",
    ),
    row(
        "seed 000 L19: 更新を行った場合、24時間以内は、マイナポイントの予約・申込みはできません",
        {}, [renew("P1", "2021-06-01T10:00:00+09:00")], "2021-06-02T09:59:59+09:00",
        "renewal_wait",
        id="24h-wait-last-second",
    ),
    row(
        "seed 000 L17: 電子証明書更新の24時間後から、マイナポイントの予約・申込みは可能 (end exclusive)",
        {}, [renew("P1", "2021-06-01T10:00:00+09:00")], "2021-06-02T10:00:00+09:00",
        "accepted",
        id="24h-wait-end-exclusive",
    ),
    row(
        "seed 001 L100: 更新完了の24時間経過後から…可能 (same instant written in UTC)",
        {}, [renew("P1", "2021-06-01T10:00:00+09:00")], "2021-06-02T01:00:00Z", "accepted",
        id="24h-wait-end-exclusive-utc",
    ),
    row(
        "seed 001 L124: 当面の間、電子証明書の更新完了の24時間経過後から可能 (1h is not enough in 2021)",
        {}, [renew("P1", "2021-06-01T10:00:00+09:00")], "2021-06-01T11:00:00+09:00",
        "renewal_wait",
        id="2021-one-hour-is-not-enough",
    ),
    # --- the 1-hour wait (requests from 2022-01-01) ----------------------------------------
    row(
        "seed 002 L24: 電子証明書更新及び発行後は、1時間経過するとお手続きいただけます",
        {}, [renew("P1", "2022-07-01T10:00:00+09:00")], "2022-07-01T10:59:59+09:00",
        "renewal_wait",
        id="1h-wait-last-second",
    ),
    row(
        "seed 002 L25: 1時間経過後にマイナポイントの申込みが可能 (end exclusive)",
        {}, [renew("P1", "2022-07-01T10:00:00+09:00")], "2022-07-01T11:00:00+09:00",
        "accepted",
        id="1h-wait-end-exclusive",
    ),
    row(
        "seed 002 L27: すでにお手持ちのマイナンバーカードへの電子証明書発行 also waits",
        {}, [renew("P1", "2022-07-01T10:00:00+09:00", reason="new_issue")],
        "2022-07-01T10:30:00+09:00", "renewal_wait",
        id="new-issue-onto-card-waits",
    ),
    row(
        "seed 002 L25/L27: new issue onto a card, 1 hour later allowed",
        {}, [renew("P1", "2022-07-01T10:00:00+09:00", reason="new_issue")],
        "2022-07-01T11:00:00+09:00", "accepted",
        id="new-issue-onto-card-after-wait",
    ),
    # --- which wait: decided by the request's JST date --------------------------------------
    row(
        "RULES.md Certificates: 24 hours for requests before 2022-01-01 (23:59:59 JST on 12-31)",
        {}, [renew("P1", "2021-12-31T10:00:00+09:00")], "2021-12-31T23:59:59+09:00",
        "renewal_wait",
        id="request-2021-12-31-23:59:59-jst-24h",
    ),
    row(
        "RULES.md Certificates: 24 hours before 2022-01-01 (14:59:59Z is still 12-31 in JST)",
        {}, [renew("P1", "2021-12-31T10:00:00+09:00")], "2021-12-31T14:59:59Z", "renewal_wait",
        id="request-2021-12-31T14:59:59Z-24h",
    ),
    row(
        "RULES.md Certificates: 1 hour from 2022-01-01; 2021-12-31T15:00:00Z = 2022-01-01 00:00 JST",
        {}, [renew("P1", "2021-12-31T10:00:00+09:00")], "2021-12-31T15:00:00Z", "accepted",
        id="request-2021-12-31T15:00:00Z-is-2022-jst-1h",
    ),
    row(
        "RULES.md Certificates + CONTRACT.md [[renewal_wait]] 'applies to a request at or after "
        "from': renewal 23:30 JST 12-31, request 00:29:59 JST 01-01 is within 1 hour",
        {}, [renew("P1", "2021-12-31T23:30:00+09:00")], "2022-01-01T00:29:59+09:00",
        "renewal_wait",
        id="renewal-2021-request-2022-inside-1h",
    ),
    row(
        "RULES.md Certificates: renewal 2021-12-31 23:30 JST, request exactly 1 hour later (2022)",
        {}, [renew("P1", "2021-12-31T23:30:00+09:00")], "2022-01-01T00:30:00+09:00", "accepted",
        id="renewal-2021-request-2022-after-1h",
    ),
    # --- suspension ---------------------------------------------------------------------------
    row(
        "RULES.md Certificates: a suspended card refuses requests; seed 000 L115: "
        "紛失・盗難による、カードの一時利用停止",
        {}, [suspend("P1", "2021-05-01T10:00:00+09:00")], "2021-05-02T10:00:00+09:00",
        "card_suspended",
        id="suspended",
    ),
    row(
        "RULES.md Certificates: …until it is resumed",
        {},
        [suspend("P1", "2021-05-01T10:00:00+09:00"), resume("P1", "2021-05-03T10:00:00+09:00")],
        "2021-05-04T10:00:00+09:00", "accepted",
        id="suspended-then-resumed",
    ),
    row(
        "RULES.md Certificates: resuming does not start a renewal wait (spec names only renewal "
        "and new issue)",
        {},
        [suspend("P1", "2021-05-01T10:00:00+09:00"), resume("P1", "2021-05-03T10:00:00+09:00")],
        "2021-05-03T10:00:01+09:00", "accepted",
        id="resumed-no-wait",
    ),
    row(
        "RULES.md Certificates: suspended twice, one resume is enough (state, not a counter)",
        {},
        [
            suspend("P1", "2021-05-01T10:00:00+09:00"),
            suspend("P1", "2021-05-02T10:00:00+09:00"),
            resume("P1", "2021-05-03T10:00:00+09:00"),
        ],
        "2021-05-04T10:00:00+09:00", "accepted",
        id="suspended-twice-resumed-once",
    ),
    row(
        "RULES.md Facts: a repeat card.issued replaces the card (a reissue after loss is not "
        "suspended) 'with no wait window'",
        {},
        [suspend("P1", "2021-05-01T10:00:00+09:00"), card("P1", "2021-05-10T10:00:00+09:00")],
        "2021-05-10T10:00:00+09:00", "accepted",
        id="suspended-then-card-reissued",
    ),
]


@pytest.mark.parametrize("kind", ["reserve", "link"])
@pytest.mark.parametrize(("src", "card_kw", "setup", "at", "expected"), CASES)
def test_certificate_checks(kind, src, card_kw, setup, at, expected):
    events, req_id = _scenario(kind, card_kw, setup, at)
    outcomes = simulate(events)
    d = decision_for(outcomes, req_id)
    assert verdict(d) == expected, f"{kind} at {at}: {src}"
    # Every fact in the setup was itself accepted.
    for ev in events[:-1]:
        assert decision_for(outcomes, ev["event_id"]).accepted, (ev, src)


@pytest.mark.parametrize(
    ("src", "kind"),
    [
        row("seed 000 L21: 有効期限内であれば、先にマイナポイントの予約・申込みをすることができます",
            "reserve", id="reserve"),
        row("seed 002 L28: 更新手続きをされる前であればマイナポイントの申込みが可能", "link",
            id="link"),
    ],
)
def test_request_before_renewal_is_allowed_and_after_renewal_waits(src, kind):
    before = _request(kind, "2021-06-01T09:59:59+09:00")
    after = _request(kind, "2021-06-01T10:00:00+09:00")
    events = [card("P1")]
    if kind == "link":
        events.append(reserve("P1"))
    events += [before, renew("P1", "2021-06-01T10:00:00+09:00"), after]
    outcomes = simulate(events)
    assert verdict(decision_for(outcomes, before["event_id"])) == "accepted", src
    assert verdict(decision_for(outcomes, after["event_id"])) == "renewal_wait", src


def test_renewal_wait_is_per_person():
    """RULES.md Certificates: the wait is the renewing person's; others are unaffected."""
    events = [
        card("P1"),
        card("P2"),
        renew("P1", "2021-06-01T10:00:00+09:00"),
        reserve("P1", "2021-06-01T11:00:00+09:00"),
        reserve("P2", "2021-06-01T11:00:00+09:00"),
    ]
    outcomes = simulate(events)
    assert verdict(decision_for(outcomes, events[3]["event_id"])) == "renewal_wait"
    assert verdict(decision_for(outcomes, events[4]["event_id"])) == "accepted"
