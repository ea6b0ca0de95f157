"""Reservation (RULES.md "Reservation (MyKey ID)"): each reason, the check order, the budget."""

from __future__ import annotations

import pytest

from tests.builders import (
    card,
    config,
    decision_for,
    link,
    renew,
    reserve,
    row,
    simulate,
    suspend,
    verdict,
    verdicts,
)

T_CARD = "2021-05-01T10:00:00+09:00"
T_REQ = "2021-06-01T10:00:00+09:00"
EXPIRED = {"expires": "2021-05-15T00:00:00+09:00"}

# (src, events before the request, config dict or None, expected verdict of the request)
SINGLE_REASONS = [
    row(
        "RULES.md Reservation; seed 001 L38: 利用者用電子証明書が搭載されたマイナンバーカードを取得する",
        [], None, "no_card", id="no_card",
    ),
    row(
        "RULES.md Reservation/Certificates; seed 000 L115: カードの一時利用停止",
        [card("P1", T_CARD), suspend("P1", T_CARD.replace("10:00", "11:00"))], None,
        "card_suspended", id="card_suspended",
    ),
    row(
        "RULES.md Reservation/Certificates; seed 000 L23: 有効期限が切れた後は…予約などはできません",
        [card("P1", T_CARD, **EXPIRED)], None, "certificate_expired", id="certificate_expired",
    ),
    row(
        "RULES.md Reservation/Certificates; seed 000 L19: 24時間以内は…予約…できません",
        [card("P1", T_CARD), renew("P1", "2021-06-01T09:00:00+09:00")], None, "renewal_wait",
        id="renewal_wait",
    ),
    row(
        "RULES.md Reservation: mykey_already_set; seed 001 L132: 既に、マイキーIDを設定している方は"
        "マイナポイントの予約済みです",
        [card("P1", T_CARD), reserve("P1", "2021-05-02T10:00:00+09:00")], None,
        "mykey_already_set", id="mykey_already_set",
    ),
    row(
        "RULES.md Reservation: budget_exhausted; seed 000 L39: 予約者数が国の予算上限に達した場合には、"
        "予約を締め切る",
        [card("P0", T_CARD), reserve("P0", T_CARD), card("P1", T_CARD)],
        {"reservation_budget": 1}, "budget_exhausted", id="budget_exhausted",
    ),
    row(
        "RULES.md Reservation; seed 001 L44: 予約をすると、マイキーIDが設定されます",
        [card("P1", T_CARD)], None, "accepted", id="accepted",
    ),
    row(
        "CONTRACT.md Configuration: reservation_budget absent = no budget (many people reserve)",
        [e for i in range(5) for e in (card(f"Q{i}", T_CARD), reserve(f"Q{i}", T_CARD))]
        + [card("P1", T_CARD)],
        None, "accepted", id="no-budget-by-default",
    ),
]

# The check order: each row fails two (or more) checks; the earlier one must win.
ORDER = [
    row(
        "RULES.md Reservation order: no_card before budget_exhausted",
        [], {"reservation_budget": 0}, "no_card", id="no_card>budget_exhausted",
    ),
    row(
        "RULES.md Reservation order: card_suspended before certificate_expired",
        [card("P1", T_CARD, **EXPIRED), suspend("P1", "2021-05-02T10:00:00+09:00")], None,
        "card_suspended", id="card_suspended>certificate_expired",
    ),
    row(
        "RULES.md Reservation order: certificate_expired before renewal_wait (renewed onto an "
        "already-past expiry)",
        [
            card("P1", T_CARD),
            renew("P1", "2021-06-01T09:00:00+09:00", expires="2021-06-01T09:30:00+09:00"),
        ],
        None, "certificate_expired", id="certificate_expired>renewal_wait",
    ),
    row(
        "RULES.md Reservation order: renewal_wait before mykey_already_set",
        [
            card("P1", T_CARD),
            reserve("P1", "2021-05-02T10:00:00+09:00"),
            renew("P1", "2021-06-01T09:00:00+09:00"),
        ],
        None, "renewal_wait", id="renewal_wait>mykey_already_set",
    ),
    row(
        "RULES.md Reservation order: mykey_already_set before budget_exhausted",
        [card("P1", T_CARD), reserve("P1", "2021-05-02T10:00:00+09:00")],
        {"reservation_budget": 1}, "mykey_already_set", id="mykey_already_set>budget_exhausted",
    ),
    row(
        "RULES.md Reservation order: card_suspended before mykey_already_set and budget",
        [
            card("P1", T_CARD),
            reserve("P1", "2021-05-02T10:00:00+09:00"),
            suspend("P1", "2021-05-03T10:00:00+09:00"),
        ],
        {"reservation_budget": 1}, "card_suspended", id="card_suspended>mykey_already_set",
    ),
    row(
        "RULES.md Reservation order: renewal_wait before budget_exhausted",
        [
            card("P0", T_CARD), reserve("P0", T_CARD),
            card("P1", T_CARD), renew("P1", "2021-06-01T09:00:00+09:00"),
        ],
        {"reservation_budget": 1}, "renewal_wait", id="renewal_wait>budget_exhausted",
    ),
]


@pytest.mark.parametrize(("src", "before", "cfg", "expected"), SINGLE_REASONS + ORDER)
def test_reservation_reason(src, before, cfg, expected):
    req = reserve("P1", T_REQ)
    outcomes = simulate([*before, req], config(cfg))
    assert verdict(decision_for(outcomes, req["event_id"])) == expected, src


# Budget sequences: (src, budget, events, expected verdict of every event)
BUDGET = [
    row(
        "seed 001 L42: 予約は国の予算の範囲内で、先着順です (first come first served)",
        2,
        [
            card("A", T_CARD), card("B", T_CARD), card("C", T_CARD),
            reserve("A", T_REQ), reserve("B", T_REQ), reserve("C", T_REQ),
        ],
        ["accepted"] * 5 + ["budget_exhausted"],
        id="third-of-two",
    ),
    row(
        "RULES.md Reservation: budget counted in processing order, not by occurred_at",
        1,
        [
            card("A", T_CARD), card("B", T_CARD),
            reserve("A", "2021-06-02T10:00:00+09:00"), reserve("B", "2021-06-01T10:00:00+09:00"),
        ],
        ["accepted", "accepted", "accepted", "budget_exhausted"],
        id="processing-order-not-occurred-at",
    ),
    row(
        "RULES.md Reservation: a refused reservation takes no place in the budget",
        1,
        [
            reserve("A", T_REQ),  # no_card
            card("B", T_CARD), reserve("B", T_REQ),
        ],
        ["no_card", "accepted", "accepted"],
        id="refused-request-takes-no-place",
    ),
    row(
        "RULES.md Reservation: budget exhausted stays exhausted (a retry is refused again)",
        1,
        [
            card("A", T_CARD), card("B", T_CARD),
            reserve("A", T_REQ), reserve("B", T_REQ),
            reserve("B", "2021-06-03T10:00:00+09:00"),
        ],
        ["accepted", "accepted", "accepted", "budget_exhausted", "budget_exhausted"],
        id="retry-still-exhausted",
    ),
    row(
        "CONTRACT.md Configuration: reservation_budget = 0 refuses every reservation",
        0,
        [card("A", T_CARD), reserve("A", T_REQ)],
        ["accepted", "budget_exhausted"],
        id="zero-budget",
    ),
    row(
        "RULES.md Reservation: mykey_already_set does not consume a second place",
        2,
        [
            card("A", T_CARD), card("B", T_CARD),
            reserve("A", T_REQ), reserve("A", "2021-06-02T10:00:00+09:00"), reserve("B", T_REQ),
        ],
        ["accepted", "accepted", "accepted", "mykey_already_set", "accepted"],
        id="repeat-does-not-consume",
    ),
]


@pytest.mark.parametrize(("src", "budget", "events", "expected"), BUDGET)
def test_reservation_budget(src, budget, events, expected):
    assert verdicts(events, config({"reservation_budget": budget})) == expected, src


def test_budget_exhausted_leaves_person_without_mykey():
    """RULES.md Linking 2: a person refused for the budget has no MyKey ID, so no_mykey."""
    events = [
        card("A", T_CARD), card("B", T_CARD),
        reserve("A", T_REQ), reserve("B", T_REQ),
        link("B", "2021-06-05T10:00:00+09:00", "phase1", account="b-acct"),
    ]
    assert verdicts(events, config({"reservation_budget": 1}))[-2:] == [
        "budget_exhausted", "no_mykey",
    ]


def test_refused_reservation_sets_no_mykey():
    """RULES.md Reservation: only an accepted reservation sets the MyKey ID."""
    events = [
        card("P1", T_CARD, **EXPIRED),
        reserve("P1", T_REQ),  # certificate_expired
        renew("P1", "2021-06-10T10:00:00+09:00"),
        link("P1", "2021-06-12T10:00:00+09:00", "phase1"),
        reserve("P1", "2021-06-12T11:00:00+09:00"),
    ]
    assert verdicts(events) == [
        "accepted", "certificate_expired", "accepted", "no_mykey", "accepted",
    ]
