"""The Mynapoint rules (RULES.md) as pure functions: (state, event) -> (new state, outcomes).

Nothing here reads a clock, a broker or a store: the live pipeline, `simulate` and replay all call
`apply` (and `complete`, for the two checks that need other people's state), so they cannot drift.

Two checks depend on people other than the one deciding: an account already linked elsewhere
(`account_linked_elsewhere`) and the national reservation budget (`budget_exhausted`). They are the
last checks of their requests, so `apply` stops there and returns a `Claim`; whoever owns the
cross-person state (an in-memory `streams.core.claims.Claims` for `simulate`, a Kafka-routed agent in
the pipeline) answers it, and `complete` finishes the decision.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import msgspec

from schemas.events import TYPE_NAMES as _TYPE_NAMES
from schemas.events import (
    AccountRegistered,
    CardIssued,
    CardResumed,
    CardSuspended,
    CertificateRenewed,
    Event,
    InsuranceRegistered,
    MyKeyReserved,
    PaymentRecorded,
    PaymentRefunded,
    ServiceLinked,
    ServicePreregistered,
)
from schemas.outcomes import Alert, Decision, Grant, Outcome
from streams.core import reasons as R
from streams.core.config import RulesConfig
from streams.core.state import EMPTY_STATE, Card, Link, PersonState, Txn, account_key, txn_key
from streams.core.timeutil import age_on, day_number, day_to_date, instant, jst_day

_replace = msgspec.structs.replace

CLAIM_ACCOUNT = "account"
CLAIM_RESERVATION = "reservation"
BUDGET_KEY = "reservation-budget"


class Claim(NamedTuple):
    """A question about other people's state that the request's decision waits on."""

    kind: str  # CLAIM_ACCOUNT or CLAIM_RESERVATION
    key: str  # the account key, or BUDGET_KEY
    person_id: str
    event_id: str


class Step(msgspec.Struct, gc=False):
    """What `apply` and `complete` return (a plain record: built once per event, it is kept cheap)."""

    state: PersonState
    outcomes: list[Outcome]
    claim: Claim | None = None


def outcome_id(ev: Event, reason: str | None) -> str:
    """A deterministic id for the decision on one input event (grants and alerts derive theirs).

    It depends only on the event's identity (person, type, event_id, and for payments the
    transaction) and on the decision's reason, so the live pipeline, `simulate` and replay give the
    same ids, a redelivered record yields an exact repeat that consumers can drop, and two
    different decisions never share an id.
    """
    return _outcome_id(ev, _TYPE_NAMES[type(ev)], reason)


# A copy of a fresh hasher is the same hash as a new one, made without parsing the arguments again.
_new_blake2b_10 = hashlib.blake2b(digest_size=10).copy


def _outcome_id(ev: Event, type_name: str, reason: str | None) -> str:
    if type(ev) is PaymentRecorded:
        data = (
            f"{ev.person_id}\x1f{type_name}\x1f{ev.event_id}"
            f"\x1f{ev.service_id}\x1f{ev.transaction_id}\x1f{reason or ''}"
        )
    else:
        data = f"{ev.person_id}\x1f{type_name}\x1f{ev.event_id}\x1f{reason or ''}"
    h = _new_blake2b_10()
    h.update(data.encode())
    return h.hexdigest()


def _decide(ev: Event, cfg: RulesConfig, reason: str | None) -> Decision:
    type_name = _TYPE_NAMES[type(ev)]
    return Decision(
        event_id=ev.event_id,
        person_id=ev.person_id,
        type=type_name,
        accepted=reason is None,
        reason=reason,
        outcome_id=_outcome_id(ev, type_name, reason),
        rules_version=cfg.version,
    )


def _seen(state: PersonState, ev: Event) -> PersonState:
    return _replace(state, event_ids=state.event_ids | {ev.event_id})


def _reject(state: PersonState, ev: Event, cfg: RulesConfig, reason: str) -> Step:
    """A refusal: only the event id is remembered, so a retry is answered `duplicate_event`."""
    return Step(_seen(state, ev), [_decide(ev, cfg, reason)])


def _accept(
    new_state: PersonState, ev: Event, cfg: RulesConfig, grant: tuple[str, str, int] | None = None
) -> Step:
    """An acceptance; `grant` (campaign, service_id, points) adds a grant unless points is 0."""
    decision = _decide(ev, cfg, None)
    if grant is not None and grant[2]:
        return Step(_seen(new_state, ev), [decision, _grant(decision, *grant)])
    return Step(_seen(new_state, ev), [decision])




def _card_problem(card: Card | None, ts: float, day: int, cfg: RulesConfig) -> str | None:
    """The certificate checks shared by reservations and links (seeds 000, 001, 002)."""
    if card is None:
        return R.NO_CARD
    if card.suspended:
        return R.CARD_SUSPENDED
    if ts >= card.certificate_expires:
        return R.CERTIFICATE_EXPIRED
    renewed = card.renewed_at
    if renewed is not None and renewed <= ts < renewed + cfg.renewal_wait_seconds(day):
        return R.RENEWAL_WAIT
    return None


# --- facts ---------------------------------------------------------------------------------


def _card_issued(state: PersonState, ev: CardIssued, ts: float, cfg: RulesConfig) -> Step:
    # A repeat replaces card and certificate, and a fresh card carries no renewal wait.
    card = Card(
        applied_day=day_number(ev.card_applied_on),
        birth_date=ev.birth_date,
        certificate_serial=ev.certificate_serial,
        certificate_expires=instant(ev.certificate_expires_at),
    )
    return _accept(_replace(state, card=card), ev, cfg)


def _certificate_renewed(
    state: PersonState, ev: CertificateRenewed, ts: float, cfg: RulesConfig
) -> Step:
    if state.card is None:
        return _reject(state, ev, cfg, R.NO_CARD)
    card = _replace(
        state.card,
        certificate_serial=ev.certificate_serial,
        certificate_expires=instant(ev.certificate_expires_at),
        renewed_at=ts,
    )
    return _accept(_replace(state, card=card), ev, cfg)


def _card_suspended(state: PersonState, ev: CardSuspended, ts: float, cfg: RulesConfig) -> Step:
    if state.card is None:
        return _reject(state, ev, cfg, R.NO_CARD)
    return _accept(_replace(state, card=_replace(state.card, suspended=True)), ev, cfg)


def _card_resumed(state: PersonState, ev: CardResumed, ts: float, cfg: RulesConfig) -> Step:
    if state.card is None:
        return _reject(state, ev, cfg, R.NO_CARD)
    return _accept(_replace(state, card=_replace(state.card, suspended=False)), ev, cfg)


def _insurance_registered(
    state: PersonState, ev: InsuranceRegistered, ts: float, cfg: RulesConfig
) -> Step:
    if state.card is None:
        return _reject(state, ev, cfg, R.NO_CARD)
    if state.insurance_registered:
        return _reject(state, ev, cfg, R.ALREADY_REGISTERED)
    return _accept(_replace(state, insurance_registered=True), ev, cfg)


def _account_registered(
    state: PersonState, ev: AccountRegistered, ts: float, cfg: RulesConfig
) -> Step:
    if state.card is None:
        return _reject(state, ev, cfg, R.NO_CARD)
    if state.account_registered:
        return _reject(state, ev, cfg, R.ALREADY_REGISTERED)
    return _accept(_replace(state, account_registered=True), ev, cfg)


def _service_preregistered(
    state: PersonState, ev: ServicePreregistered, ts: float, cfg: RulesConfig
) -> Step:
    # The payment service's own fact: accepted whatever the card's state.
    key = account_key(ev.service_id, ev.service_account)
    return _accept(_replace(state, preregistered=state.preregistered | {key}), ev, cfg)


# --- reservation ---------------------------------------------------------------------------


def _mykey_reserved(state: PersonState, ev: MyKeyReserved, ts: float, cfg: RulesConfig) -> Step:
    problem = _card_problem(state.card, ts, jst_day(ts), cfg)
    if problem is None and state.mykey_id is not None:
        problem = R.MYKEY_ALREADY_SET
    if problem is not None:
        return _reject(state, ev, cfg, problem)
    if cfg.reservation_budget is not None:
        return Step(state, [], Claim(CLAIM_RESERVATION, BUDGET_KEY, ev.person_id, ev.event_id))
    return _accept(_replace(state, mykey_id=ev.mykey_id), ev, cfg)


# --- linking a service (申込) ---------------------------------------------------------------


def _link_problem(state: PersonState, ev: ServiceLinked, ts: float, cfg: RulesConfig) -> str | None:
    day = jst_day(ts)
    problem = _card_problem(state.card, ts, day, cfg)
    if problem is not None:
        return problem
    card = state.card
    assert card is not None
    if state.mykey_id is None:
        return R.NO_MYKEY
    campaign = cfg.campaigns[ev.campaign]
    if not campaign.link_from <= day <= campaign.link_until:
        return R.OUTSIDE_WINDOW
    if card.applied_day > campaign.card_applied_by:
        return R.CARD_APPLIED_TOO_LATE
    # Seed 002: a proxy may apply only for someone under 15 on the day of the request.
    if ev.applicant == "proxy" and age_on(card.birth_date, day_to_date(day)) >= 15:
        return R.PROXY_NOT_ALLOWED
    service = cfg.services.get(ev.service_id)
    if service is None:
        return R.UNKNOWN_SERVICE
    if ev.campaign not in service.campaigns or day < service.selectable_from:
        return R.SERVICE_NOT_SELECTABLE
    if service.preregistration_required and (
        account_key(ev.service_id, ev.service_account) not in state.preregistered
    ):
        return R.PREREGISTRATION_MISSING
    if ev.campaign == "phase2_purchase" and any(lk.campaign == "phase1" for lk in state.links):
        return R.PHASE1_APPLIED
    if ev.campaign == "phase2_insurance" and not state.insurance_registered:
        return R.NOT_REGISTERED
    if ev.campaign == "phase2_account" and not state.account_registered:
        return R.NOT_REGISTERED
    for lk in state.links:
        if lk.campaign == ev.campaign:
            if lk.service_id == ev.service_id and lk.service_account == ev.service_account:
                return R.ALREADY_LINKED
            return R.SERVICE_CHANGE_NOT_ALLOWED
    return None


def _service_linked(state: PersonState, ev: ServiceLinked, ts: float, cfg: RulesConfig) -> Step:
    problem = _link_problem(state, ev, ts, cfg)
    if problem is not None:
        return _reject(state, ev, cfg, problem)
    return Step(
        state,
        [],
        Claim(
            CLAIM_ACCOUNT,
            account_key(ev.service_id, ev.service_account),
            ev.person_id,
            ev.event_id,
        ),
    )


def _complete_link(
    state: PersonState, ev: ServiceLinked, granted: bool, holder: str | None, cfg: RulesConfig
) -> Step:
    if not granted:
        decision = _decide(ev, cfg, R.ACCOUNT_LINKED_ELSEWHERE)
        alert = Alert(
            code=R.ALERT_ACCOUNT_SHARED,
            event_id=ev.event_id,
            person_id=ev.person_id,
            outcome_id=decision.outcome_id + "-a",
            service_id=ev.service_id,
            service_account=ev.service_account,
            linked_person_id=holder,
        )
        return Step(
            _seen(state, ev), [decision, alert]
        )
    ts = instant(ev.occurred_at)
    link = Link(ev.campaign, ev.service_id, ev.service_account, ts, jst_day(ts))
    links = state.links + (link,)
    campaign = cfg.campaigns[ev.campaign]
    if campaign.flat:
        points = campaign.cap - state.points.get(ev.campaign, 0)
        if points:
            new_state = _replace(
                state, links=links, points={**state.points, ev.campaign: campaign.cap}
            )
            return _accept(new_state, ev, cfg, grant=(ev.campaign, ev.service_id, points))
    return _accept(_replace(state, links=links), ev, cfg)


def _grant(accepted: Decision, campaign: str, service_id: str, points: int) -> Grant:
    """Points granted because of the event `accepted` decided (its id is outcome_id(ev, None))."""
    return Grant(
        event_id=accepted.event_id,
        person_id=accepted.person_id,
        campaign=campaign,
        service_id=service_id,
        points=points,
        outcome_id=accepted.outcome_id + "-g",
        rules_version=accepted.rules_version,
    )


def complete(
    state: PersonState | None,
    ev: Event,
    claim: Claim,
    granted: bool,
    holder: str | None,
    cfg: RulesConfig,
) -> Step:
    """Finishes a decision that `apply` left waiting on `claim`, given the claim's answer.

    `state` must be the state `apply` saw: the caller holds the person's later events until then.
    """
    st = EMPTY_STATE if state is None else state
    if claim.kind == CLAIM_ACCOUNT:
        assert type(ev) is ServiceLinked
        return _complete_link(st, ev, granted, holder, cfg)
    assert type(ev) is MyKeyReserved
    if not granted:
        return _reject(st, ev, cfg, R.BUDGET_EXHAUSTED)
    return _accept(_replace(st, mykey_id=ev.mykey_id), ev, cfg)


# --- payments ------------------------------------------------------------------------------


def _purchase_points(spend: int, campaign_cap: int, rate_percent: int) -> int:
    # Cumulative, never rounded per payment (RULES.md, seed 001).
    return min(campaign_cap, spend * rate_percent // 100)


def _payment_recorded(
    state: PersonState, ev: PaymentRecorded, ts: float, cfg: RulesConfig
) -> Step:
    link = None
    index = 0
    for lk in state.links:
        if (
            lk.service_id == ev.service_id
            and lk.service_account == ev.service_account
            and (lk.campaign == "phase1" or lk.campaign == "phase2_purchase")
        ):
            link = lk
            break
        index += 1
    if link is None:
        # Not remembered: state stays bounded by what was linked.
        return Step(state, [_decide(ev, cfg, R.NOT_LINKED_SERVICE)])
    key = txn_key(ev.service_id, ev.transaction_id)
    if key in state.txns:
        return Step(state, [_decide(ev, cfg, R.DUPLICATE_TRANSACTION)])
    name = link.campaign
    campaign = cfg.campaigns[name]
    day = jst_day(ts)
    reason: str | None = None
    points_before = state.points.get(name, 0)
    if ts < link.linked_at:
        reason = R.BEFORE_LINK  # seed 003: charges before applying earn nothing
    elif (svc := cfg.services.get(ev.service_id)) is not None and svc.same_day_excluded and (
        day == link.day
    ):
        reason = R.SAME_DAY_EXCLUDED  # seed 002
    elif not (campaign.pay_from or 0) <= day <= (campaign.pay_until or -1):
        reason = R.OUTSIDE_WINDOW
    elif points_before >= campaign.cap:
        reason = R.CAP_REACHED
    if reason is not None:
        # Remembered although it earns nothing: a retry is a duplicate, a refund of it is known.
        txn = Txn(index, ev.amount_yen)
        return Step(
            _replace(state, txns={**state.txns, key: txn}), [_decide(ev, cfg, reason)]
        )
    spend = state.spend.get(name, 0) + ev.amount_yen
    total = _purchase_points(spend, campaign.cap, campaign.rate_percent)
    txn = Txn(index, ev.amount_yen, 0, True)
    new_state = _replace(
        state,
        txns={**state.txns, key: txn},
        spend={**state.spend, name: spend},
        points={**state.points, name: total},
    )
    decision = _decide(ev, cfg, None)
    outcomes: list[Outcome] = [decision]
    if total != points_before:
        outcomes.append(_grant(decision, name, ev.service_id, total - points_before))
    return Step(new_state, outcomes)


def _payment_refunded(
    state: PersonState, ev: PaymentRefunded, ts: float, cfg: RulesConfig
) -> Step:
    key = txn_key(ev.service_id, ev.transaction_id)
    txn = state.txns.get(key)
    if txn is None or state.links[txn.link].service_account != ev.service_account:
        return _reject(state, ev, cfg, R.UNKNOWN_TRANSACTION)
    if ev.amount_yen > txn.amount - txn.refunded:
        return _reject(state, ev, cfg, R.REFUND_EXCEEDS_PAYMENT)
    new_txn = _replace(txn, refunded=txn.refunded + ev.amount_yen)
    if not txn.counted:
        return _accept(_replace(state, txns={**state.txns, key: new_txn}), ev, cfg)
    name = state.links[txn.link].campaign
    campaign = cfg.campaigns[name]
    points_before = state.points.get(name, 0)
    spend = state.spend.get(name, 0) - ev.amount_yen
    total = _purchase_points(spend, campaign.cap, campaign.rate_percent)
    new_state = _replace(
        state,
        txns={**state.txns, key: new_txn},
        spend={**state.spend, name: spend},
        points={**state.points, name: total},
    )
    return _accept(new_state, ev, cfg, grant=(name, ev.service_id, total - points_before))


_HANDLERS = {
    CardIssued: _card_issued,
    CertificateRenewed: _certificate_renewed,
    CardSuspended: _card_suspended,
    CardResumed: _card_resumed,
    MyKeyReserved: _mykey_reserved,
    ServicePreregistered: _service_preregistered,
    InsuranceRegistered: _insurance_registered,
    AccountRegistered: _account_registered,
    ServiceLinked: _service_linked,
    PaymentRecorded: _payment_recorded,
    PaymentRefunded: _payment_refunded,
}


def apply(state: PersonState | None, ev: Event, cfg: RulesConfig) -> Step:
    """Decides one event for its person. A returned `claim` means: ask, then call `complete`."""
    st = EMPTY_STATE if state is None else state
    cls = type(ev)
    if cls is not PaymentRecorded and ev.event_id in st.event_ids:
        # A repeat of the producer's idempotency key changes nothing (RULES.md, "Every event").
        return Step(st, [_decide(ev, cfg, R.DUPLICATE_EVENT)])
    return _HANDLERS[cls](st, ev, instant(ev.occurred_at), cfg)  # type: ignore[operator]
