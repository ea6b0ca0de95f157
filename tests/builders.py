"""Shared helpers for the table-driven rule tests.

Event builders return plain dicts in the CONTRACT.md input format; `to_lines` turns them into the
JSON lines `mynapoint simulate` reads, and `simulate` runs them through `streams.audit.simulate.run`
with a configuration and returns the flat list of outcome objects, in processing order.

Timestamps are written with an explicit offset, mostly `+09:00` (JST); a few rows deliberately use
`Z` to test JST calendar-day boundaries (2021-12-31T15:00:00Z is 2022-01-01 00:00 JST).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

from schemas.codec import OUTCOME_ENCODER
from schemas.outcomes import Alert, Decision, Grant, Outcome
from streams.audit.simulate import run
from streams.core.config import RulesConfig, build_config, load_config

Event = dict[str, Any]

FAR_EXPIRY = "2031-01-01T00:00:00+09:00"
DEFAULT_SERVICE = "demo-pay"
DEFAULT_ACCOUNT = "acct-1"

_ids = itertools.count(1)


def _eid(event_id: str | None) -> str:
    return event_id if event_id is not None else f"e{next(_ids)}"


def event(type_: str, person: str, at: str, event_id: str | None = None, **fields: Any) -> Event:
    return {
        "event_id": _eid(event_id),
        "type": type_,
        "person_id": person,
        "occurred_at": at,
        **fields,
    }


# --- facts -----------------------------------------------------------------------------------


def card(
    person: str = "P1",
    at: str = "2020-06-01T10:00:00+09:00",
    *,
    applied: str = "2020-05-01",
    birth: str = "1980-01-01",
    serial: str = "CERT-1",
    expires: str = FAR_EXPIRY,
    event_id: str | None = None,
) -> Event:
    return event(
        "card.issued",
        person,
        at,
        event_id,
        card_applied_on=applied,
        birth_date=birth,
        certificate_serial=serial,
        certificate_expires_at=expires,
    )


def renew(
    person: str = "P1",
    at: str = "2021-06-01T10:00:00+09:00",
    *,
    expires: str = FAR_EXPIRY,
    reason: str = "renewal",
    serial: str = "CERT-2",
    event_id: str | None = None,
) -> Event:
    return event(
        "certificate.renewed",
        person,
        at,
        event_id,
        certificate_serial=serial,
        certificate_expires_at=expires,
        reason=reason,
    )


def suspend(person: str = "P1", at: str = "2020-06-05T10:00:00+09:00", **kw: Any) -> Event:
    return event("card.suspended", person, at, kw.pop("event_id", None), **kw)


def resume(person: str = "P1", at: str = "2020-06-06T10:00:00+09:00", **kw: Any) -> Event:
    return event("card.resumed", person, at, kw.pop("event_id", None), **kw)


def prereg(
    person: str = "P1",
    at: str = "2020-06-01T12:00:00+09:00",
    service: str = DEFAULT_SERVICE,
    account: str = DEFAULT_ACCOUNT,
    event_id: str | None = None,
) -> Event:
    return event(
        "service.preregistered", person, at, event_id, service_id=service, service_account=account
    )


def insurance(person: str = "P1", at: str = "2022-07-01T10:00:00+09:00", **kw: Any) -> Event:
    return event("insurance.registered", person, at, kw.pop("event_id", None), **kw)


def account_reg(person: str = "P1", at: str = "2022-07-01T10:00:00+09:00", **kw: Any) -> Event:
    return event("account.registered", person, at, kw.pop("event_id", None), **kw)


# --- requests ---------------------------------------------------------------------------------


def reserve(
    person: str = "P1",
    at: str = "2020-06-02T10:00:00+09:00",
    mykey: str = "MYKEY001",
    event_id: str | None = None,
) -> Event:
    return event("mykey.reserved", person, at, event_id, mykey_id=mykey)


def link(
    person: str = "P1",
    at: str = "2020-08-01T10:00:00+09:00",
    campaign: str = "phase1",
    service: str = DEFAULT_SERVICE,
    account: str = DEFAULT_ACCOUNT,
    applicant: str | None = None,
    event_id: str | None = None,
) -> Event:
    fields: dict[str, Any] = {
        "campaign": campaign,
        "service_id": service,
        "service_account": account,
    }
    if applicant is not None:
        fields["applicant"] = applicant
    return event("service.linked", person, at, event_id, **fields)


def pay(
    person: str = "P1",
    at: str = "2020-09-10T10:00:00+09:00",
    txn: str = "T1",
    amount: int = 1000,
    service: str = DEFAULT_SERVICE,
    account: str = DEFAULT_ACCOUNT,
    method: str = "charge",
    event_id: str | None = None,
) -> Event:
    return event(
        "payment.recorded",
        person,
        at,
        event_id,
        service_id=service,
        service_account=account,
        transaction_id=txn,
        method=method,
        amount_yen=amount,
    )


def refund(
    person: str = "P1",
    at: str = "2020-09-20T10:00:00+09:00",
    txn: str = "T1",
    amount: int = 1000,
    service: str = DEFAULT_SERVICE,
    account: str = DEFAULT_ACCOUNT,
    event_id: str | None = None,
) -> Event:
    return event(
        "payment.refunded",
        person,
        at,
        event_id,
        service_id=service,
        service_account=account,
        transaction_id=txn,
        amount_yen=amount,
    )


# --- ready-made prefixes ------------------------------------------------------------------------


def phase1_ready(person: str = "P1", **card_kw: Any) -> list[Event]:
    """A person with a card (applied 2020-05-01, issued 2020-06-01) and a MyKey ID (2020-06-02)."""
    return [card(person, **card_kw), reserve(person)]


def phase1_linked(
    person: str = "P1",
    at: str = "2020-08-01T10:00:00+09:00",
    service: str = DEFAULT_SERVICE,
    account: str = DEFAULT_ACCOUNT,
) -> list[Event]:
    """phase1_ready plus an accepted phase1 link (2020-08-01 10:00 JST)."""
    return [*phase1_ready(person), link(person, at, "phase1", service, account)]


def phase2_ready(person: str = "P2", **card_kw: Any) -> list[Event]:
    """A person with a card (applied 2022-10-01, issued 2022-11-01) and a MyKey ID (2022-11-02)."""
    kw: dict[str, Any] = {"at": "2022-11-01T10:00:00+09:00", "applied": "2022-10-01"}
    kw.update(card_kw)
    return [card(person, **kw), reserve(person, "2022-11-02T10:00:00+09:00")]


def phase2_linked(
    person: str = "P2",
    at: str = "2022-11-03T10:00:00+09:00",
    service: str = DEFAULT_SERVICE,
    account: str = DEFAULT_ACCOUNT,
) -> list[Event]:
    """phase2_ready plus an accepted phase2_purchase link (2022-11-03 10:00 JST)."""
    return [*phase2_ready(person), link(person, at, "phase2_purchase", service, account)]


# --- running --------------------------------------------------------------------------------


def config(raw: dict[str, Any] | None = None) -> RulesConfig:
    """The defaults of RULES.md, with `raw` (the TOML document as a dict) applied."""
    return build_config(raw or {})


def config_from_toml(text: str, tmp_path: Path) -> RulesConfig:
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


DEFAULT_CONFIG = config()


def to_lines(events: Iterable[Event | bytes | str]) -> list[bytes]:
    out: list[bytes] = []
    for ev in events:
        if isinstance(ev, bytes):
            out.append(ev)
        elif isinstance(ev, str):
            out.append(ev.encode())
        else:
            out.append(json.dumps(ev, ensure_ascii=False).encode())
    return out


def simulate(events: Iterable[Event | bytes | str], cfg: RulesConfig | None = None) -> list[Outcome]:
    """Runs the events through `streams.audit.simulate.run`; every outcome, in processing order."""
    outcomes: list[Outcome] = []
    for batch in run(to_lines(events), cfg if cfg is not None else DEFAULT_CONFIG):
        outcomes.extend(batch)
    return outcomes


def as_json(outcomes: Sequence[Outcome]) -> list[dict[str, Any]]:
    """The outcomes as the JSON objects `simulate` prints (key order preserved)."""
    return [json.loads(OUTCOME_ENCODER.encode(o)) for o in outcomes]


def decisions(outcomes: Sequence[Outcome]) -> list[Decision]:
    return [o for o in outcomes if isinstance(o, Decision)]


def grants(outcomes: Sequence[Outcome]) -> list[Grant]:
    return [o for o in outcomes if isinstance(o, Grant)]


def alerts(outcomes: Sequence[Outcome]) -> list[Alert]:
    return [o for o in outcomes if isinstance(o, Alert)]


def decision_for(outcomes: Sequence[Outcome], event_id: str) -> Decision:
    found = [d for d in decisions(outcomes) if d.event_id == event_id]
    assert len(found) == 1, f"expected exactly one decision for {event_id}, got {found}"
    return found[0]


def verdict(d: Decision) -> str:
    """'accepted' or the reason code: one string to compare with a table's expectation."""
    if d.accepted:
        assert d.reason is None, d
        return "accepted"
    assert d.reason is not None, d
    return d.reason


def verdicts(events: Sequence[Event], cfg: RulesConfig | None = None) -> list[str]:
    """The verdict of every event, in order (one decision per event is asserted)."""
    ds = decisions(simulate(events, cfg))
    assert [d.event_id for d in ds] == [e["event_id"] for e in events], ds
    return [verdict(d) for d in ds]


def last_verdict(events: Sequence[Event], cfg: RulesConfig | None = None) -> str:
    return verdicts(events, cfg)[-1]


def grants_for(outcomes: Sequence[Outcome], event_id: str) -> list[int]:
    return [g.points for g in grants(outcomes) if g.event_id == event_id]


def row(src: str, *values: Any, id: str, bug: str | None = None) -> Any:  # noqa: A002
    """One table row: `src` cites the seed line or RULES.md section it comes from.

    `bug` marks a row where the implementation disagrees with RULES.md (strict xfail).
    """
    marks = [pytest.mark.xfail(strict=True, reason=f"BUG: {bug}")] if bug else []
    return pytest.param(src, *values, id=id, marks=marks)
