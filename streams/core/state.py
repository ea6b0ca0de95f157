"""Per-person state: immutable values, replaced whole on every change.

A Faust table changelogs only on assignment, so the live pipeline must write `table[key] =
new_state`; frozen Structs (and copy-on-write collections inside them) make any in-place change
impossible to write by accident. Instants are float seconds since the epoch, days are JST day
numbers (see `streams.core.timeutil`).
"""

from __future__ import annotations

import datetime as dt

import msgspec

#: Version of the stored state layout; `streams.core.versions` upcasts older ones on read.
STATE_VERSION = 2


class Card(msgspec.Struct, frozen=True, array_like=True):
    applied_day: int
    birth_date: dt.date
    certificate_serial: str
    certificate_expires: float
    # Instant of the last renewal or new issue onto this card; None after a (re)issue of the card.
    renewed_at: float | None = None
    suspended: bool = False


class Link(msgspec.Struct, frozen=True, array_like=True):
    campaign: str
    service_id: str
    service_account: str
    linked_at: float
    day: int


class Txn(msgspec.Struct, frozen=True, array_like=True):
    # The payment's link: its index in `PersonState.links` (links are only ever appended), whose
    # campaign and account the payment was recorded under.
    link: int
    amount: int
    refunded: int = 0
    # True when the payment was accepted and its amount is in the campaign's eligible spend.
    counted: bool = False


class PersonState(msgspec.Struct, frozen=True, array_like=True):
    v: int = STATE_VERSION
    card: Card | None = None
    mykey_id: str | None = None
    # Every event_id already decided for this person (payments are tracked by transaction instead).
    event_ids: frozenset[str] = frozenset()
    # "service_id\x00service_account" keys from service.preregistered.
    preregistered: frozenset[str] = frozenset()
    insurance_registered: bool = False
    account_registered: bool = False
    links: tuple[Link, ...] = ()
    # Per purchase campaign: eligible spend S in yen. Per campaign: points granted so far.
    spend: dict[str, int] = {}
    points: dict[str, int] = {}
    # "service_id\x00transaction_id" -> the recorded payment.
    txns: dict[str, Txn] = {}


EMPTY_STATE = PersonState()

STATE_ENCODER = msgspec.msgpack.Encoder()


def account_key(service_id: str, service_account: str) -> str:
    """The key of a (service, account) pair: in `preregistered` and in the claims table."""
    return f"{service_id}\x00{service_account}"


def txn_key(service_id: str, transaction_id: str) -> str:
    """The key of a payment in `txns`: payments are deduplicated by service and transaction."""
    return f"{service_id}\x00{transaction_id}"


def service_of_key(key: str) -> str:
    """The service_id of an `account_key` or `txn_key`."""
    return key.split("\x00", 1)[0]
