"""Properties of the rules that must hold for every input, checked with hypothesis.

RULES.md ("Payments", "Every event"): points never exceed a cap; the total does not depend on the
order of the eligible payments; a repeated event changes nothing; every line gets a decision or a
dead letter and never a crash; every valid event gets exactly one decision.
"""

from __future__ import annotations

import datetime as dt
import itertools

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import EVENT_DECODER
from schemas.outcomes import DeadLetter, Decision, Grant
from streams.audit.simulate import run
from streams.core.config import build_config
from streams.core.engine import Engine
from streams.core.rules import apply
from streams.core.state import STATE_ENCODER

CFG = build_config(
    {
        "services": [
            {"id": "demo-pay", "campaigns": ["phase1", "phase2_purchase", "phase2_insurance",
                                             "phase2_account"]},
            {"id": "qr-pay", "preregistration_required": True},
            {"id": "ic-money", "same_day_excluded": True},
        ],
        "reservation_budget": 2,
    }
)
JST = dt.timezone(dt.timedelta(hours=9))
PEOPLE = ["p1", "p2", "p3"]
SERVICES = ["demo-pay", "qr-pay", "ic-money", "nope-pay"]
ACCOUNTS = ["a1", "a2"]
CAMPAIGNS = ["phase1", "phase2_purchase", "phase2_insurance", "phase2_account"]

instants = st.datetimes(
    min_value=dt.datetime(2020, 6, 1), max_value=dt.datetime(2023, 11, 1)
).map(lambda d: d.replace(tzinfo=JST).isoformat())
dates = st.dates(min_value=dt.date(2005, 1, 1), max_value=dt.date(2023, 6, 1)).map(str)


def _common(kind: str):
    return {
        "type": st.just(kind),
        "event_id": st.sampled_from([f"e{i}" for i in range(40)]),
        "person_id": st.sampled_from(PEOPLE),
        "occurred_at": instants,
    }


EVENT_DICTS = st.one_of(
    st.fixed_dictionaries(
        {
            **_common("card.issued"),
            "card_applied_on": dates,
            "birth_date": dates,
            "certificate_serial": st.just("C1"),
            "certificate_expires_at": instants,
        }
    ),
    st.fixed_dictionaries(
        {
            **_common("certificate.renewed"),
            "certificate_serial": st.just("C2"),
            "certificate_expires_at": instants,
            "reason": st.sampled_from(["renewal", "new_issue"]),
        }
    ),
    st.fixed_dictionaries(_common("card.suspended")),
    st.fixed_dictionaries(_common("card.resumed")),
    st.fixed_dictionaries({**_common("mykey.reserved"), "mykey_id": st.just("ABCD1234")}),
    st.fixed_dictionaries(
        {
            **_common("service.preregistered"),
            "service_id": st.sampled_from(SERVICES),
            "service_account": st.sampled_from(ACCOUNTS),
        }
    ),
    st.fixed_dictionaries(_common("insurance.registered")),
    st.fixed_dictionaries(_common("account.registered")),
    st.fixed_dictionaries(
        {
            **_common("service.linked"),
            "campaign": st.sampled_from(CAMPAIGNS),
            "service_id": st.sampled_from(SERVICES),
            "service_account": st.sampled_from(ACCOUNTS),
            "applicant": st.sampled_from(["self", "proxy"]),
        }
    ),
    st.fixed_dictionaries(
        {
            **_common("payment.recorded"),
            "service_id": st.sampled_from(SERVICES),
            "service_account": st.sampled_from(ACCOUNTS),
            "transaction_id": st.sampled_from([f"t{i}" for i in range(8)]),
            "method": st.sampled_from(["charge", "purchase"]),
            "amount_yen": st.integers(1, 40_000),
        }
    ),
    st.fixed_dictionaries(
        {
            **_common("payment.refunded"),
            "service_id": st.sampled_from(SERVICES),
            "service_account": st.sampled_from(ACCOUNTS),
            "transaction_id": st.sampled_from([f"t{i}" for i in range(8)]),
            "amount_yen": st.integers(1, 40_000),
        }
    ),
)

LINES = st.lists(EVENT_DICTS.map(msgspec.json.encode), max_size=40)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _outcomes(lines: list[bytes]):
    return [o for batch in run(lines, CFG) for o in batch]


def _setup_lines(person: str, service: str = "demo-pay", account: str = "a1") -> list[bytes]:
    base = [
        {"type": "card.issued", "event_id": "s1", "person_id": person,
         "occurred_at": "2020-08-01T09:00:00+09:00", "card_applied_on": "2020-07-01",
         "birth_date": "1980-01-01", "certificate_serial": "C", "certificate_expires_at":
         "2030-01-01T00:00:00+09:00"},
        {"type": "mykey.reserved", "event_id": "s2", "person_id": person,
         "occurred_at": "2020-08-03T09:00:00+09:00", "mykey_id": "ABCD1234"},
        {"type": "service.linked", "event_id": "s3", "person_id": person,
         "occurred_at": "2020-08-05T09:00:00+09:00", "campaign": "phase1",
         "service_id": service, "service_account": account},
    ]
    return [msgspec.json.encode(e) for e in base]


def _payment(i: int, amount: int, person: str = "p1") -> bytes:
    return msgspec.json.encode(
        {"type": "payment.recorded", "event_id": f"pay{i}", "person_id": person,
         "occurred_at": f"2020-09-{1 + i % 28:02d}T12:00:00+09:00", "service_id": "demo-pay",
         "service_account": "a1", "transaction_id": f"t{i}", "method": "charge",
         "amount_yen": amount}
    )


@SETTINGS
@given(LINES)
def test_points_never_exceed_cap_nor_go_negative(lines):
    totals: dict[tuple[str, str], int] = {}
    for o in _outcomes(lines):
        if isinstance(o, Grant):
            key = (o.person_id, o.campaign)
            totals[key] = totals.get(key, 0) + o.points
            cap = CFG.campaigns[o.campaign].cap
            assert 0 <= totals[key] <= cap, (key, totals[key])


@SETTINGS
@given(st.lists(st.integers(1, 12_000), min_size=1, max_size=8), st.randoms())
def test_total_points_do_not_depend_on_payment_order(amounts, rnd):
    payments = [_payment(i, a) for i, a in enumerate(amounts)]
    expected = min(5000, sum(amounts) * 25 // 100)
    orders = list(itertools.islice(itertools.permutations(payments), 6))
    shuffled = payments[:]
    rnd.shuffle(shuffled)
    orders.append(shuffled)
    for order in orders:
        grants = [o.points for o in _outcomes(_setup_lines("p1") + list(order))
                  if isinstance(o, Grant)]
        assert sum(grants) == expected


@SETTINGS
@given(LINES, st.data())
def test_resending_an_event_changes_no_state(lines, data):
    if not lines:
        return
    events = [EVENT_DECODER.decode(line) for line in lines]
    cut = data.draw(st.integers(0, len(events) - 1))
    eng = Engine(CFG)
    for ev in events[: cut + 1]:
        eng.process(ev)
    repeat = events[cut]
    before = eng.people.get(repeat.person_id)
    step = apply(before, repeat, CFG)
    assert step.claim is None  # a repeat never reaches the cross-person checks
    after = step.state
    encoded_before = STATE_ENCODER.encode(before) if before is not None else None
    assert encoded_before is None or STATE_ENCODER.encode(after) == encoded_before
    decisions = [o for o in step.outcomes if isinstance(o, Decision)]
    assert len(decisions) == 1 and not decisions[0].accepted
    assert decisions[0].reason in {"duplicate_event", "duplicate_transaction", "not_linked_service"}
    assert not [o for o in step.outcomes if isinstance(o, Grant)]


@SETTINGS
@given(st.lists(st.one_of(st.binary(max_size=80), st.text(max_size=80).map(str.encode),
                          EVENT_DICTS.map(msgspec.json.encode),
                          # A well-formed event whose string holds bytes that are not UTF-8.
                          st.tuples(EVENT_DICTS.map(msgspec.json.encode),
                                    st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80"])).map(
                              lambda t: t[0].replace(b'"event_id":"', b'"event_id":"' + t[1], 1))),
                max_size=20))
def test_any_line_gives_a_decision_or_a_dead_letter(lines):
    lines = [line.replace(b"\n", b" ") for line in lines]
    outcomes = _outcomes(lines)
    answered = [o for o in outcomes if isinstance(o, Decision | DeadLetter)]
    assert len(answered) == len(lines)
    for i, o in enumerate(answered, start=1):
        if isinstance(o, DeadLetter):
            assert o.line == i and o.error and o.reason


@SETTINGS
@given(LINES)
def test_every_valid_event_gets_exactly_one_decision(lines):
    outcomes = _outcomes(lines)
    decisions = [o for o in outcomes if isinstance(o, Decision)]
    assert [d.event_id for d in decisions] == [EVENT_DECODER.decode(x).event_id for x in lines]
    assert not [o for o in outcomes if isinstance(o, DeadLetter)]
    for d in decisions:
        assert d.accepted == (d.reason is None)


@SETTINGS
@given(LINES)
def test_output_is_deterministic(lines):
    enc = msgspec.json.encode
    assert [enc(o) for o in _outcomes(lines)] == [enc(o) for o in _outcomes(lines)]
