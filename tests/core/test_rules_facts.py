"""Facts (RULES.md "Facts"): accepted, except no_card / already_registered; what they change."""

from __future__ import annotations

import pytest

from tests.builders import (
    account_reg,
    card,
    config,
    insurance,
    link,
    phase1_ready,
    phase2_ready,
    prereg,
    renew,
    reserve,
    resume,
    row,
    suspend,
    verdicts,
)

T = "2021-06-01T10:00:00+09:00"
EXPIRED = "2021-05-15T00:00:00+09:00"


def _t(hour: int, minute: int = 0, day: int = 1) -> str:
    return f"2021-06-{day:02d}T{hour:02d}:{minute:02d}:00+09:00"


# (src, events, expected verdict of every event)
FACTS = [
    # --- card.issued ----------------------------------------------------------------------------
    row("RULES.md Facts: card.issued is always accepted",
        [card("P1", T)], ["accepted"], id="card-issued"),
    row("RULES.md Facts: a repeat card.issued is accepted too",
        [card("P1", T), card("P1", _t(11))], ["accepted", "accepted"], id="card-issued-repeat"),
    row("RULES.md Facts: a repeat replaces the certificate (expired card reissued -> usable)",
        [card("P1", "2021-05-01T10:00:00+09:00", expires=EXPIRED), reserve("P1", T),
         card("P1", _t(11)), reserve("P1", _t(12))],
        ["accepted", "certificate_expired", "accepted", "accepted"], id="reissue-replaces-expired"),
    row("RULES.md Facts: a repeat replaces the certificate (not merged: a reissue carrying an "
        "expired certificate is expired)",
        [card("P1", "2021-05-01T10:00:00+09:00"), card("P1", _t(9), expires=EXPIRED),
         reserve("P1", T)],
        ["accepted", "accepted", "certificate_expired"], id="reissue-replaces-good"),
    row("RULES.md Facts: card.issued repeat 'with no wait window' (renewal, then a reissue)",
        [card("P1", "2021-05-01T10:00:00+09:00"), renew("P1", _t(10)), card("P1", _t(10, 10)),
         reserve("P1", _t(10, 20))],
        ["accepted", "accepted", "accepted", "accepted"], id="reissue-clears-wait"),
    row("RULES.md Facts: a first card.issued starts no wait window (only renewal/new issue does)",
        [card("P1", T), reserve("P1", T)], ["accepted", "accepted"], id="first-card-no-wait"),
    row("RULES.md People: person_id survives reissues; the MyKey ID stays (mykey_already_set)",
        [card("P1", "2021-05-01T10:00:00+09:00"), reserve("P1", "2021-05-02T10:00:00+09:00"),
         card("P1", T), reserve("P1", _t(11))],
        ["accepted", "accepted", "accepted", "mykey_already_set"], id="reissue-keeps-mykey"),
    # --- certificate.renewed ---------------------------------------------------------------------
    row("RULES.md Facts: certificate.renewed without a card is no_card",
        [renew("P1", T)], ["no_card"], id="renew-no-card"),
    row("RULES.md Facts: certificate.renewed (new_issue) without a card is no_card",
        [renew("P1", T, reason="new_issue")], ["no_card"], id="new-issue-no-card"),
    row("RULES.md Facts: certificate.renewed with a card is accepted (even inside a wait)",
        [card("P1", "2021-05-01T10:00:00+09:00"), renew("P1", T), renew("P1", _t(11))],
        ["accepted", "accepted", "accepted"], id="renew-twice"),
    row("RULES.md Certificates: a second renewal restarts the wait from its own instant",
        [card("P1", "2021-05-01T10:00:00+09:00"), renew("P1", _t(10)), renew("P1", _t(9, 0, 2)),
         reserve("P1", _t(10, 0, 2))],
        ["accepted", "accepted", "accepted", "renewal_wait"], id="second-renewal-restarts-wait"),
    row("RULES.md Facts: renewal is accepted while the card is suspended, and does not resume it",
        [card("P1", "2021-05-01T10:00:00+09:00"), suspend("P1", "2021-05-02T10:00:00+09:00"),
         renew("P1", "2021-05-03T10:00:00+09:00"), reserve("P1", T)],
        ["accepted", "accepted", "accepted", "card_suspended"], id="renew-while-suspended"),
    row("RULES.md Facts: a renewal refused for no_card leaves no wait on a later card",
        [renew("P1", _t(10)), card("P1", _t(10, 30)), reserve("P1", _t(11))],
        ["no_card", "accepted", "accepted"], id="refused-renewal-no-wait"),
    # --- card.suspended / card.resumed -----------------------------------------------------------
    row("RULES.md Facts: card.suspended without a card is no_card",
        [suspend("P1", T)], ["no_card"], id="suspend-no-card"),
    row("RULES.md Facts: card.resumed without a card is no_card",
        [resume("P1", T)], ["no_card"], id="resume-no-card"),
    row("RULES.md Facts: card.suspended / card.resumed with a card are accepted",
        [card("P1", "2021-05-01T10:00:00+09:00"), suspend("P1", _t(9)), resume("P1", _t(10)),
         reserve("P1", _t(11))],
        ["accepted"] * 4, id="suspend-resume"),
    row("RULES.md Facts: resuming a card that is not suspended is accepted",
        [card("P1", "2021-05-01T10:00:00+09:00"), resume("P1", T)], ["accepted", "accepted"],
        id="resume-not-suspended"),
    row("RULES.md Facts: suspending an expired card is accepted (facts need only a card)",
        [card("P1", "2021-05-01T10:00:00+09:00", expires=EXPIRED), suspend("P1", T)],
        ["accepted", "accepted"], id="suspend-expired"),
    row("seed 000 L115: 一時利用停止 (a refused suspension does not suspend a later card)",
        [suspend("P1", _t(9)), card("P1", _t(10)), reserve("P1", _t(11))],
        ["no_card", "accepted", "accepted"], id="refused-suspension"),
    # --- insurance.registered / account.registered ---------------------------------------------
    row("RULES.md Facts: insurance.registered without a card is no_card",
        [insurance("P1", T)], ["no_card"], id="insurance-no-card"),
    row("RULES.md Facts: account.registered without a card is no_card",
        [account_reg("P1", T)], ["no_card"], id="account-no-card"),
    row("RULES.md Facts: already_registered for the same thing twice (insurance)",
        [card("P1", "2021-05-01T10:00:00+09:00"), insurance("P1", T), insurance("P1", _t(11))],
        ["accepted", "accepted", "already_registered"], id="insurance-twice"),
    row("RULES.md Facts: already_registered for the same thing twice (account)",
        [card("P1", "2021-05-01T10:00:00+09:00"), account_reg("P1", T), account_reg("P1", _t(11))],
        ["accepted", "accepted", "already_registered"], id="account-twice"),
    row("RULES.md Facts: insurance and account registration are different things",
        [card("P1", "2021-05-01T10:00:00+09:00"), insurance("P1", T), account_reg("P1", _t(11))],
        ["accepted", "accepted", "accepted"], id="insurance-then-account"),
    row("RULES.md Facts: registration needs a card, not a valid certificate (choice: only no_card "
        "is listed)",
        [card("P1", "2021-05-01T10:00:00+09:00", expires=EXPIRED), insurance("P1", T),
         suspend("P1", _t(11)), account_reg("P1", _t(12))],
        ["accepted"] * 4, id="registration-expired-or-suspended"),
    row("RULES.md Facts: a registration refused for no_card does not count (then phase2_insurance "
        "is not_registered); seed 002 L16",
        [insurance("P1", "2022-10-01T10:00:00+09:00"), *phase2_ready("P1"),
         link("P1", "2022-11-03T10:00:00+09:00", "phase2_insurance")],
        ["no_card", "accepted", "accepted", "not_registered"], id="refused-registration"),
    row("RULES.md Facts: registering again after a card reissue is still already_registered",
        [card("P1", "2021-05-01T10:00:00+09:00"), insurance("P1", "2021-05-02T10:00:00+09:00"),
         card("P1", T), insurance("P1", _t(11))],
        ["accepted", "accepted", "accepted", "already_registered"],
        id="registration-survives-reissue"),
    # --- service.preregistered -------------------------------------------------------------------
    row("RULES.md Facts: service.preregistered is always accepted (no card needed)",
        [prereg("P1", T)], ["accepted"], id="prereg-no-card"),
    row("RULES.md Facts: service.preregistered always (repeat, and with a suspended card)",
        [card("P1", "2021-05-01T10:00:00+09:00"), suspend("P1", _t(9)), prereg("P1", T),
         prereg("P1", _t(11))],
        ["accepted"] * 4, id="prereg-repeat-suspended"),
    row("RULES.md Linking 7: a preregistration made before the card still counts; seed 002 L60: "
        "事前にご登録をお願いします",
        [prereg("P1", "2020-05-01T10:00:00+09:00", service="prereg-pay"), *phase1_ready("P1"),
         link("P1", "2020-08-01T10:00:00+09:00", service="prereg-pay")],
        ["accepted"] * 4, id="prereg-before-card"),
    row("RULES.md Linking 7: without it the same link is preregistration_missing (control row)",
        [*phase1_ready("P1"), link("P1", "2020-08-01T10:00:00+09:00", service="prereg-pay")],
        ["accepted", "accepted", "preregistration_missing"], id="prereg-control"),
]

# Every row runs with a catalog that also has a service requiring preregistration.
CATALOG = config(
    {
        "services": [
            {"id": "demo-pay"},
            {"id": "prereg-pay", "preregistration_required": True},
        ]
    }
)


@pytest.mark.parametrize(("src", "events", "expected"), FACTS)
def test_facts(src, events, expected):
    assert verdicts(events, CATALOG) == expected, src
