"""Deterministic, realistic demo histories for `mynapoint generate`, the benchmark and the docs.

`generate(people, seed, bad_ratio)` yields one JSON event per line (bytes, no newline) for
`people` people, about 10 events per person, against the catalog of `streams/data/demo.toml`.
The same arguments always give the same bytes (one `random.Random(seed)`, no clock, no hashing
of strings).

Each person gets a plausible life between 2016 and October 2023: a My Number Card (applied for in
2020-2023, or an older card whose certificate runs out during the program), maybe a suspension, a
MyKey reservation, registrations, links for the four campaigns and payments on the linked service.
People make the mistakes real people made, and the rules refuse them: asking while the certificate
is expired or inside the wait after a renewal, linking before reserving or outside the window,
proxies for adults, the wrong service, no 事前登録, changing service, charging before the link or on
the day of the link with an e-money card, going past the cap, refunds of unknown transactions. A
few people share a payment account (the 誤紐付け signature), a few events are delivered twice, and
`bad_ratio` of extra lines are malformed (not JSON, missing fields, naive timestamps, unknown
types, 12-digit person ids, bad MyKey ids, amounts out of range).

File order is processing order: events are sorted by when they reach the system. That is their
`occurred_at`, except for a few payments the service reports some days late (which is how a
charge made before the link can arrive after it: `before_link`) and for redeliveries.
"""

from __future__ import annotations

import calendar
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

#: The configuration the generated histories are written for.
DEMO_CONFIG = Path(__file__).resolve().parents[1] / "streams" / "data" / "demo.toml"

_DAY = 86400
_HOUR = 3600
_JST = 9 * _HOUR
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_encode = msgspec.json.Encoder().encode
_gmtime = time.gmtime
_strftime = time.strftime


def _t(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> int:
    """Epoch seconds of a JST wall-clock time."""
    return calendar.timegm((y, m, d, hh, mm, 0)) - _JST


def _jst(ts: int) -> str:
    return _strftime("%Y-%m-%dT%H:%M:%S+09:00", _gmtime(ts + _JST))


def _utc(ts: int) -> str:
    return _strftime("%Y-%m-%dT%H:%M:%SZ", _gmtime(ts))


def _date(ts: int) -> str:
    return _strftime("%Y-%m-%d", _gmtime(ts + _JST))


def _jst_day(ts: int) -> int:
    return (ts + _JST) // _DAY


# The program's calendar (RULES.md defaults, which demo.toml keeps).
_PROGRAM_START = _t(2020, 6, 1)
_HORIZON = _t(2023, 10, 31, 23, 0)
_WAIT_SHORT_FROM = _t(2022, 1, 1)
_P1_CARD_BY = _t(2021, 5, 1)  # applied on or before 2021-04-30
_P1_LINK = (_t(2020, 7, 1), _t(2022, 1, 1))  # [from, until) as instants
_P1_PAY = (_t(2020, 9, 1), _t(2023, 10, 1))
_P2_CARD_BY = _t(2023, 3, 1)
_P2_LINK = (_t(2022, 1, 1), _t(2023, 10, 1))
_P2_FLAT_LINK = (_t(2022, 6, 30), _t(2023, 10, 1))
_P2_PAY = (_t(2022, 1, 1), _t(2023, 10, 1))
_LATE_PAY_FROM = _t(2020, 10, 1)
_BANK_PAY_FROM = _t(2022, 1, 1)

# (service, share of people choosing it, prefix of its account ids, usual payment method)
_SERVICES = (
    ("demo-pay", 0.34, "DP", "purchase"),
    ("qr-pay", 0.24, "QR", "purchase"),
    ("ic-money", 0.20, "IC", "charge"),
    ("late-pay", 0.11, "LP", "purchase"),
    ("bank-pay", 0.11, "BK", "purchase"),
)
_SERVICE_IDS = tuple(s[0] for s in _SERVICES)
_SERVICE_WEIGHTS = tuple(s[1] for s in _SERVICES)
_PREFIX = {s[0]: s[2] for s in _SERVICES} | {"acme-wallet": "AW"}
_METHOD = {s[0]: s[3] for s in _SERVICES}
_INF = 1 << 62


def _wait(ts: int) -> int:
    # The renewal wait of RULES.md (the simulator's config decides; this only aims requests at it).
    return 24 * _HOUR if ts < _WAIT_SHORT_FROM else _HOUR


class _Person:
    """One person's events, as (arrival, occurred, fields) before the global merge."""

    __slots__ = ("r", "idx", "pid", "k", "events", "bad", "mykey_at", "links", "txn_n",
                 "prev")

    def __init__(self, r: random.Random, idx: int, prev: tuple[str, str, int] | None):
        self.r = r
        # The previous person's first purchase link (service, account, when), for mix-ups.
        self.prev = prev
        self.idx = idx
        self.pid = f"P{idx:07d}"
        self.k = 0
        self.events: list[tuple[int, int, dict[str, Any]]] = []
        # Intervals [a, b) in which a request is refused for the card's sake (no card, suspended,
        # certificate expired, renewal wait); a person who is refused tries again after it.
        self.bad: list[tuple[int, int]] = []
        self.mykey_at = _INF
        self.links: dict[str, tuple[str, str, int]] = {}  # campaign -> (service, account, at)
        self.txn_n = 0

    # -- emitting --------------------------------------------------------------------------

    def add(
        self, ts: int, typ: str, fields: dict[str, Any] | None = None, arrival: int | None = None,
        utc: bool = False,
    ) -> dict[str, Any]:
        self.k += 1
        ev: dict[str, Any] = {
            "event_id": f"{self.pid}-{self.k:03d}",
            "type": typ,
            "person_id": self.pid,
            "occurred_at": _utc(ts) if utc else _jst(ts),
        }
        if fields:
            ev.update(fields)
        self.events.append((ts if arrival is None else arrival, ts, ev))
        return ev

    def daytime(self, ts: int) -> int:
        """The same JST day as `ts`, at a waking hour."""
        day0 = (ts + _JST) // _DAY * _DAY - _JST
        return day0 + self.r.randint(7 * _HOUR, 22 * _HOUR + 3599)

    def between(self, a: int, b: int) -> int:
        return a if b <= a else self.r.randint(a, b)

    def next_ok(self, ts: int) -> int:
        """The first instant at or after `ts` when the card allows requests (or _INF)."""
        moved = True
        while moved and ts < _INF:
            moved = False
            for a, b in self.bad:
                if a <= ts < b:
                    ts = b if b >= _INF else b + self.r.randint(600, 6 * _DAY)
                    moved = True
        return ts

    def account(self, service: str) -> str:
        return f"{_PREFIX[service]}-{self.idx:07d}"

    # -- requests --------------------------------------------------------------------------

    def request(self, ts: int, typ: str, fields: dict[str, Any]) -> int:
        """A reservation or link at `ts`; refused for the card's sake, it is tried again later.

        Returns when it was (last) made, or _INF when the person gave up.
        """
        ok = self.next_ok(ts)
        if ok != ts:
            self.add(ts, typ, fields)  # refused: suspended, expired, or in the renewal wait
            if ok >= _HORIZON or self.r.random() < 0.1:
                return _INF
            ts = ok
        self.add(ts, typ, fields)
        return ts

    def reserve(self, ts: int) -> None:
        r = self.r
        mykey = "".join(r.choices(_ALNUM, k=8))
        at = self.request(ts, "mykey.reserved", {"mykey_id": mykey})
        self.mykey_at = at
        if at < _INF and r.random() < 0.02:
            # Forgot having done it: a second reservation, refused mykey_already_set.
            again = at + r.randint(2, 200) * _DAY
            if again < _HORIZON:
                self.request(again, "mykey.reserved", {"mykey_id": "".join(r.choices(_ALNUM, k=8))})

    def link(
        self, ts: int, campaign: str, window: tuple[int, int], service: str, applicant: str,
        born: int,
    ) -> int:
        """Applies for `campaign`, fixing the mistakes the rules point out, as people did.

        Returns the instant of the link the person believes accepted, or _INF.
        """
        r = self.r
        if ts >= _HORIZON:
            return _INF
        if self.mykey_at >= _INF or ts < self.mykey_at:
            # Tried to apply before reserving: no_mykey, then (if ever reserved) again after it.
            self.request(ts, "service.linked", self._link_fields(campaign, service, applicant))
            if self.mykey_at >= _INF:
                return _INF
            ts = self.mykey_at + r.randint(600, 20 * _DAY)
        if applicant == "proxy" and (ts - born) >= 15 * 365 * _DAY + 3 * _DAY:
            # A proxy for someone 15 or older: proxy_not_allowed; the person applies themself.
            self.request(ts, "service.linked", self._link_fields(campaign, service, "proxy"))
            applicant = "self"
            ts += r.randint(1, 10) * _DAY
        if r.random() < 0.01:
            # A service that is not in the program at all.
            self.request(ts, "service.linked", self._link_fields(campaign, "acme-wallet", applicant))
            service = "demo-pay"
            ts += r.randint(1, 5) * _DAY
        if service == "bank-pay" and (campaign == "phase1" or ts < _BANK_PAY_FROM):
            self.request(ts, "service.linked", self._link_fields(campaign, service, applicant))
            service = "demo-pay"
            ts += r.randint(1, 5) * _DAY
        if service == "late-pay" and ts < _LATE_PAY_FROM:
            self.request(ts, "service.linked", self._link_fields(campaign, service, applicant))
            ts = _LATE_PAY_FROM + r.randint(0, 60) * _DAY
        if service == "qr-pay" and (service, self.account(service)) not in self._prereg:
            if r.random() < 0.1:
                # Forgot the service's 事前登録: preregistration_missing, registers, tries again.
                self.request(ts, "service.linked", self._link_fields(campaign, service, applicant))
                ts += r.randint(1, 3) * _DAY
                self.prereg(ts - r.randint(600, 20 * _HOUR), service)
            else:
                self.prereg(ts - r.randint(1 * _HOUR, 10 * _DAY), service)
        if ts >= _HORIZON:
            return _INF
        at = self.request(ts, "service.linked", self._link_fields(campaign, service, applicant))
        if at >= _INF or not window[0] <= at < window[1]:
            return _INF
        self.links[campaign] = (service, self.account(service), at)
        if r.random() < 0.03:
            # Applies again, a harmless repeat: already_linked.
            self.request(at + r.randint(1, 90) * _DAY, "service.linked",
                         self._link_fields(campaign, service, applicant))
        elif r.random() < 0.02:
            # Wants another service: service_change_not_allowed (seed 003).
            other = r.choice([s for s in _SERVICE_IDS if s not in (service, "bank-pay")])
            self.request(at + r.randint(1, 90) * _DAY, "service.linked",
                         self._link_fields(campaign, other, applicant))
        return at

    @property
    def _prereg(self) -> set[tuple[str, str]]:
        return {
            (ev["service_id"], ev["service_account"])
            for _, _, ev in self.events
            if ev["type"] == "service.preregistered"
        }

    def prereg(self, ts: int, service: str) -> None:
        self.add(ts, "service.preregistered",
                 {"service_id": service, "service_account": self.account(service)})

    def _link_fields(self, campaign: str, service: str, applicant: str) -> dict[str, Any]:
        fields = {"campaign": campaign, "service_id": service,
                  "service_account": self.account(service)}
        if applicant != "self" or self.r.random() < 0.5:
            fields["applicant"] = applicant  # optional, default "self"
        return fields

    # -- payments --------------------------------------------------------------------------

    def pay(self, ts: int, service: str, account: str, amount: int, arrival: int | None = None,
            txn: str | None = None) -> dict[str, Any]:
        r = self.r
        if txn is None:
            self.txn_n += 1
            txn = f"{_PREFIX[service]}{self.idx:07d}{self.txn_n:04d}"
        method = _METHOD.get(service, "purchase")
        if r.random() < 0.2:
            method = "charge" if method == "purchase" else "purchase"
        return self.add(
            ts, "payment.recorded",
            {"service_id": service, "service_account": account, "transaction_id": txn,
             "method": method, "amount_yen": amount},
            arrival=arrival, utc=r.random() < 0.5,  # services report in UTC or JST
        )

    def amount(self) -> int:
        r = self.r
        u = r.random()
        if u < 0.7:
            amt = r.randint(100, 3000)
        elif u < 0.92:
            amt = r.randint(3000, 10000)
        elif u < 0.98:
            amt = r.randint(10000, 20000)
        else:
            amt = r.randint(20000, 30000)
        # Charges are usually round sums.
        return amt // 1000 * 1000 if r.random() < 0.4 and amt >= 1000 else amt

    def spend(self, campaign: str, window: tuple[int, int]) -> None:
        """Payments on the service linked for a purchase campaign, some refunded."""
        r = self.r
        service, account, at = self.links[campaign]
        if r.random() < 0.08:
            # A charge made before applying, reported by the service after the link: before_link.
            t = at - r.randint(_HOUR, 10 * _DAY)
            self.pay(t, service, account, self.amount(), arrival=at + r.randint(_HOUR, 3 * _DAY))
        if service == "ic-money" and r.random() < 0.35:
            # Charging the card right after the link, on the same day: same_day_excluded.
            day_end = (_jst_day(at) + 1) * _DAY - _JST
            if day_end - at > 120:
                self.pay(r.randint(at + 60, day_end - 1), service, account, self.amount())
        end = min(at + r.randint(30, 420) * _DAY, _HORIZON)
        start = max(at + 600, window[0] - 20 * _DAY)
        if end <= start:
            return
        n = r.randint(6, 30)
        times = sorted(r.randint(start, end) for _ in range(n))
        spent = 0
        for t in times:
            amt = self.amount()
            ev = self.pay(t, service, account, amt)
            spent += amt
            u = r.random()
            if u < 0.02:
                # The service sends the same transaction again, under a new event id.
                self.pay(t, service, account, amt, arrival=t + r.randint(1, 900),
                         txn=ev["transaction_id"])
            elif u < 0.07:
                self.refund(t, ev)
            elif u < 0.075:
                # A refund naming a transaction this person never made: unknown_transaction.
                fake = dict(ev, transaction_id=ev["transaction_id"] + "X")
                self.refund(t, fake)
            if spent >= 20000 and r.random() < 0.2:
                break  # at the cap: most people stop, some go on (cap_reached)

    def refund(self, t: int, paid: dict[str, Any]) -> None:
        r = self.r
        amt = paid["amount_yen"]
        u = r.random()
        if u < 0.12:
            amount = amt + r.randint(1, 5000)  # refund_exceeds_payment
        elif u < 0.7 or amt < 2:
            amount = amt
        else:
            amount = r.randint(1, amt - 1)
        when = t + r.randint(_HOUR, 30 * _DAY)
        if when >= _HORIZON:
            return
        self.add(when, "payment.refunded",
                 {"service_id": paid["service_id"], "service_account": paid["service_account"],
                  "transaction_id": paid["transaction_id"], "amount_yen": amount},
                 utc=r.random() < 0.5)
        if amount < amt and r.random() < 0.3:
            # A second refund of the rest, and sometimes more than the rest.
            rest = amt - amount + (r.randint(1, 2000) if r.random() < 0.3 else 0)
            when2 = when + r.randint(_HOUR, 10 * _DAY)
            if when2 < _HORIZON:
                self.add(when2, "payment.refunded",
                         {"service_id": paid["service_id"],
                          "service_account": paid["service_account"],
                          "transaction_id": paid["transaction_id"], "amount_yen": rest})

    # -- a life ----------------------------------------------------------------------------

    def live(self) -> None:
        r = self.r
        if r.random() < 0.015:
            self.no_card()
            return
        old = r.random() < 0.15
        if old:
            applied = _t(2016, 1, 1) + r.randrange(4 * 365) * _DAY
        else:
            applied = _t(2020, 1, 1) + r.randrange(1277) * _DAY  # up to 2023-06-30
        issued = self.daytime(applied + r.randint(14, 60) * _DAY)
        child = r.random() < 0.1
        if child:
            born = _t(2006, 4, 1) + r.randrange(14 * 365) * _DAY
        else:
            born = _t(1935, 1, 1) + r.randrange(70 * 365) * _DAY
        expires = issued + (5 * 365 + r.randint(0, 364)) * _DAY
        self.add(issued, "card.issued", {
            "card_applied_on": _date(applied),
            "birth_date": _date(born),
            "certificate_serial": f"{r.getrandbits(48):012X}",
            "certificate_expires_at": _jst(expires),
        })
        self.bad.append((-_INF, issued))

        # When the person means to do things (before the card's troubles are known).
        first = max(issued + r.randint(1, 90) * _DAY, _PROGRAM_START + r.randint(0, 120) * _DAY)
        mykey_plan = self.daytime(first) if r.random() < 0.95 else _INF

        # The certificate: older cards run out during the program; most are renewed.
        if expires < _HORIZON:
            u = r.random()
            if u < 0.55:
                renew = self.daytime(expires - r.randint(1, 90) * _DAY)
            elif u < 0.85:
                renew = self.daytime(expires + r.randint(1, 120) * _DAY)
            else:
                renew = _INF
            if renew < _HORIZON and mykey_plan < _INF and r.random() < 0.3:
                # Renewed just before reserving: the request lands in the renewal wait.
                renew = max(issued + _DAY, mykey_plan - r.randint(60, _wait(mykey_plan) - 60))
            if renew < _INF:
                reason = "renewal" if r.random() < 0.9 else "new_issue"
                new_expires = renew + 5 * 365 * _DAY
                self.add(renew, "certificate.renewed", {
                    "certificate_serial": f"{r.getrandbits(48):012X}",
                    "certificate_expires_at": _jst(new_expires),
                    "reason": reason,
                })
                if expires < renew:
                    self.bad.append((expires, renew))
                self.bad.append((renew, renew + _wait(renew)))
            else:
                self.bad.append((expires, _INF))
        elif r.random() < 0.01:
            # A certificate newly issued onto the card (e.g. after it was revoked).
            renew = self.daytime(first + r.randint(-10, 300) * _DAY)
            if renew < _HORIZON:
                self.add(renew, "certificate.renewed", {
                    "certificate_serial": f"{r.getrandbits(48):012X}",
                    "certificate_expires_at": _jst(renew + 5 * 365 * _DAY),
                    "reason": "new_issue",
                })
                self.bad.append((renew, renew + _wait(renew)))

        if r.random() < 0.03:
            # Lost the card: suspended, often just when wanting to use it, then found again.
            if mykey_plan < _INF and r.random() < 0.5:
                susp = mykey_plan - r.randint(_HOUR, 5 * _DAY)
            else:
                susp = self.daytime(first + r.randint(0, 700) * _DAY)
            resume = susp + r.randint(2, 30) * _DAY
            self.add(susp, "card.suspended")
            if r.random() < 0.9:
                self.add(resume, "card.resumed")
            else:
                resume = _INF
            self.bad.append((susp, resume))
        if r.random() < 0.01:
            # A replacement card: card.issued again, new certificate, no wait.
            again = self.daytime(first + r.randint(30, 900) * _DAY)
            if again < _HORIZON:
                self.add(again, "card.issued", {
                    "card_applied_on": _date(again - r.randint(14, 40) * _DAY),
                    "birth_date": _date(born),
                    "certificate_serial": f"{r.getrandbits(48):012X}",
                    "certificate_expires_at": _jst(again + 5 * 365 * _DAY),
                })

        # Registrations (健康保険証利用登録, 公金受取口座登録), some of them twice.
        ins = acc = _INF
        if r.random() < 0.45:
            ins = self.daytime(max(issued + _DAY, _t(2021, 3, 1)) + r.randint(0, 700) * _DAY)
            if ins < _HORIZON:
                self.add(ins, "insurance.registered")
                if r.random() < 0.02:
                    self.add(ins + r.randint(1, 100) * _DAY, "insurance.registered")
        if r.random() < 0.4:
            acc = self.daytime(max(issued + _DAY, _t(2022, 3, 1)) + r.randint(0, 500) * _DAY)
            if acc < _HORIZON:
                self.add(acc, "account.registered")
                if r.random() < 0.02:
                    self.add(acc + r.randint(1, 100) * _DAY, "account.registered")

        # A few apply for 第1弾 before reserving (no_mykey), then again after.
        early_link = mykey_plan < _INF and r.random() < 0.03
        if mykey_plan < _INF:
            self.reserve(mykey_plan)

        applicant = "proxy" if (child and r.random() < 0.95) or r.random() < 0.02 else "self"
        service = r.choices(_SERVICE_IDS, _SERVICE_WEIGHTS)[0]
        shared = self.prev is not None and r.random() < 0.003

        # 第1弾: cards applied for by 2021-04-30.
        p1_at = _INF
        if applied < _P1_CARD_BY and r.random() < 0.62:
            t = max(first, _P1_LINK[0]) + r.randint(0, 400) * _DAY
            if early_link:
                t = min(t, self.mykey_at - r.randint(_HOUR, 5 * _DAY))
            elif r.random() < 0.03:
                t = _P1_LINK[0] - r.randint(1, 25) * _DAY  # before the window opened
            t = self.daytime(max(t, issued + _HOUR))
            if shared:
                t = self._shared_link(t, "phase1", applicant)
            p1_at = self.link(t, "phase1", _P1_LINK, service, applicant, born)
            if p1_at >= _INF and t < _P1_LINK[0]:
                # Refused before the window: applies again once it is open.
                t2 = self.daytime(_P1_LINK[0] + r.randint(0, 60) * _DAY)
                p1_at = self.link(t2, "phase1", _P1_LINK, service, applicant, born)
        elif applied >= _P1_CARD_BY and issued < _P1_LINK[1] and r.random() < 0.15:
            # Card applied for too late for 第1弾: card_applied_too_late.
            t = self.daytime(self.between(max(first, issued + _DAY), _P1_LINK[1] - _DAY))
            self.link(t, "phase1", _P1_LINK, service, applicant, born)
            self.links.pop("phase1", None)

        # 第2弾 ① purchases: only for people without a 第1弾 link.
        if p1_at < _INF:
            self.spend("phase1", _P1_PAY)
            if r.random() < 0.04:
                t = self.daytime(max(p1_at, _P2_LINK[0]) + r.randint(1, 300) * _DAY)
                self.link(t, "phase2_purchase", _P2_LINK, service, applicant, born)
        elif r.random() < (0.6 if applied < _P2_CARD_BY else 0.3):
            t = max(first, _P2_LINK[0]) + r.randint(0, 500) * _DAY
            if r.random() < 0.015:
                t = _P2_LINK[1] + r.randint(1, 25) * _DAY  # too late: outside_window
            t = self.daytime(t)
            if shared and "phase1" not in self.links:
                t = self._shared_link(t, "phase2_purchase", applicant)
            at = self.link(t, "phase2_purchase", _P2_LINK, service, applicant, born)
            if at < _INF and applied < _P2_CARD_BY:
                self.spend("phase2_purchase", _P2_PAY)

        # 第2弾 ② and ③: 7,500 points each, after registering.
        for campaign, registered in (("phase2_insurance", ins), ("phase2_account", acc)):
            if registered < _HORIZON and r.random() < 0.8:
                t = self.daytime(max(registered, _P2_FLAT_LINK[0]) + r.randint(0, 300) * _DAY)
            elif registered >= _HORIZON and r.random() < 0.03:
                t = self.daytime(_P2_FLAT_LINK[0] + r.randint(0, 400) * _DAY)  # not_registered
            else:
                continue
            if "phase1" in self.links or "phase2_purchase" in self.links:
                svc = next(iter(self.links.values()))[0]  # usually the same service again
                if r.random() < 0.2:
                    svc = r.choices(_SERVICE_IDS, _SERVICE_WEIGHTS)[0]
            else:
                svc = r.choices(_SERVICE_IDS, _SERVICE_WEIGHTS)[0]
            self.link(t, campaign, _P2_FLAT_LINK, svc, applicant, born)

        if r.random() < 0.04:
            # Pays with a service that is not the linked one: not_linked_service.
            svc = r.choice(_SERVICE_IDS)
            for _ in range(r.randint(1, 2)):
                t = self.daytime(max(first, _P1_PAY[0]) + r.randint(0, 700) * _DAY)
                if t < _HORIZON:
                    self.pay(t, svc, self.account(svc) + "-2", self.amount())

    def _shared_link(self, t: int, campaign: str, applicant: str) -> int:
        """Links the previous person's account (a mix-up at a shared support terminal).

        That person linked it first, so this is refused account_linked_elsewhere with an
        account_shared alert; the person then applies with their own account.
        """
        if self.prev is None or self.mykey_at >= _INF:
            return t
        service, other, at = self.prev
        t = max(t, at + self.r.randint(_HOUR, 30 * _DAY), self.mykey_at + _HOUR)
        if t >= _HORIZON:
            return t
        if service == "qr-pay":
            self.add(t - _HOUR, "service.preregistered",
                     {"service_id": service, "service_account": other})
        fields = {"campaign": campaign, "service_id": service, "service_account": other,
                  "applicant": applicant}
        self.request(t, "service.linked", fields)
        return t + self.r.randint(1, 14) * _DAY

    def no_card(self) -> None:
        """Someone without a card who tries anyway: no_card."""
        r = self.r
        t = self.daytime(_PROGRAM_START + r.randint(0, 1000) * _DAY)
        self.add(t, "mykey.reserved", {"mykey_id": "".join(r.choices(_ALNUM, k=8))})
        if r.random() < 0.5:
            self.add(t + r.randint(1, 30) * _DAY, "insurance.registered")
        if r.random() < 0.5:
            self.add(t + r.randint(1, 30) * _DAY, "service.linked",
                     {"campaign": "phase2_purchase", "service_id": "demo-pay",
                      "service_account": self.account("demo-pay")})
        if r.random() < 0.2:
            self.add(t + r.randint(1, 30) * _DAY, "card.suspended")


def _timeline(r: random.Random, idx: int, prev: tuple[str, str, int] | None) -> _Person:
    p = _Person(r, idx, prev)
    p.live()
    events = p.events
    # Redeliveries: the same record (same event_id) sent again by an at-least-once producer.
    for i in range(len(events)):
        if r.random() < 0.005:
            arrival, occurred, ev = events[i]
            events.append((arrival + r.randint(1, 3 * _HOUR), occurred, ev))
    p.events = [e for e in events if e[0] < _HORIZON]
    return p


def _bad_line(r: random.Random, line: bytes, n: int) -> bytes:
    """A malformed variant of a real line, the way producers get it wrong."""
    ev = msgspec.json.decode(line)
    ev["event_id"] = f"{ev['event_id']}-bad{n}"
    u = r.randrange(10)
    if u == 0:
        return line[: r.randint(1, len(line) - 2)]  # cut short: not JSON
    if u == 1:
        return r.choice([b"<html><body>502 Bad Gateway</body></html>", b"", b"[]", b"null",
                         b'"card.issued"', b"{'event_id': 'x'}"])
    if u == 2:
        key = r.choice([k for k in ev if k != "applicant"])
        del ev[key]  # missing field
    elif u == 3:
        ev["occurred_at"] = ev["occurred_at"][:19]  # naive timestamp
    elif u == 4:
        ev["type"] = r.choice(["card.reissued", "points.granted", "Payment", ""])
    elif u == 5:
        ev["person_id"] = "".join(r.choices("0123456789", k=12))  # a My Number-shaped id
    elif u == 6:
        ev["type"] = "mykey.reserved"
        ev["mykey_id"] = r.choice(["ABC-1234", "1234567", "ABCDEFGHI", "ｱｲｳｴｵ123"])
    elif u == 7:
        ev["type"] = "payment.recorded"
        ev.setdefault("service_id", "demo-pay")
        ev.setdefault("service_account", "DP-0000000")
        ev.setdefault("transaction_id", "DP-bad")
        ev.setdefault("method", "charge")
        ev["amount_yen"] = r.choice([0, -500, 10_000_001, 1.5, "3000"])
    elif u == 8:
        ev["occurred_at"] = r.choice(["2021-02-30T10:00:00+09:00", "yesterday", 1612345678])
    else:
        ev["person_id"] = r.choice(["", "P 123", "P" * 65, None])
    return _encode(ev)


def generate(people: int, seed: int = 1, bad_ratio: float = 0.002) -> Iterator[bytes]:
    """The demo history, one JSON event per item (bytes without a newline), in file order."""
    r = random.Random(seed)
    rows: list[tuple[int, int, bytes]] = []
    append = rows.append
    seq = 0
    prev: tuple[str, str, int] | None = None
    for idx in range(people):
        person = _timeline(r, idx, prev)
        for arrival, _occurred, ev in person.events:
            seq += 1
            append((arrival, seq, _encode(ev)))
        links = person.links
        first = links.get("phase1") or links.get("phase2_purchase")
        prev = first if first is not None else prev
    rows.sort()
    rand = r.random
    bad = 0
    for row in rows:
        line = row[2]
        if bad_ratio > 0 and rand() < bad_ratio:
            bad += 1
            yield _bad_line(r, line, bad)
        yield line


def write_history(out: BinaryIO, people: int, seed: int = 1, bad_ratio: float = 0.002) -> int:
    """Writes `generate(...)` as JSONL to `out`; returns the number of lines written."""
    n = 0
    chunk: list[bytes] = []
    for line in generate(people, seed, bad_ratio):
        chunk.append(line)
        if len(chunk) >= 8192:
            out.write(b"\n".join(chunk) + b"\n")
            n += len(chunk)
            chunk = []
    if chunk:
        out.write(b"\n".join(chunk) + b"\n")
        n += len(chunk)
    return n
