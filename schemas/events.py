"""The input events of CONTRACT.md, as frozen msgspec Structs tagged on `type`.

Validation lives in the types themselves (patterns, ranges, timezone-aware timestamps), so one
decoder built once both parses and validates, and `mynapoint schema` can print the same rules as
JSON Schema for integrators.
"""

from __future__ import annotations

import datetime as dt
import re
import typing
from typing import Annotated, Literal

import msgspec

#: Version of the stored event envelope. Bump it (and add an upcaster in `streams.core.versions`) for
#: any change that msgspec's evolution rules do not absorb; never rewrite stored events.
EVENT_SCHEMA_VERSION = 1

# `$(?!\n)`: Python's `$` also matches before a final newline ("P1\n" would pass); the lookahead
# keeps the patterns exact and still valid JSON Schema (ECMA-262) regexes.
PRINTABLE_ASCII_1_64 = r"^[\x20-\x7e]{1,64}$(?!\n)"
# A person id is opaque; a bare 12-digit number is refused because that is the shape of a My Number
# (個人番号), which must never enter the system (seed 003).
PERSON_ID_PATTERN = r"^(?!\d{12}$)[A-Za-z0-9_-]{1,64}$(?!\n)"
MYKEY_PATTERN = r"^[A-Za-z0-9]{8}$(?!\n)"
_PERSON_ID_RE = re.compile(PERSON_ID_PATTERN)


def valid_person_id(person_id: str) -> bool:
    """True when `person_id` could be a person id of CONTRACT.md: [A-Za-z0-9_-]{1,64}, never a
    bare 12-digit number. Anything that asks for a person checks it before echoing the id."""
    return _PERSON_ID_RE.fullmatch(person_id) is not None  # `$` alone would allow a final "\n"


EventId = Annotated[
    str,
    msgspec.Meta(
        pattern=PRINTABLE_ASCII_1_64,
        description="The producer's idempotency key: 1-64 printable ASCII characters.",
    ),
]
PersonId = Annotated[
    str,
    msgspec.Meta(
        pattern=PERSON_ID_PATTERN,
        description=(
            "Opaque, stable person id, [A-Za-z0-9_-]{1,64}. Never a 12-digit number: "
            "a My Number must not enter the system."
        ),
    ),
]
Timestamp = Annotated[
    dt.datetime,
    msgspec.Meta(tz=True, description="RFC 3339 timestamp with an offset (naive is invalid)."),
]
Ref = Annotated[
    str, msgspec.Meta(pattern=PRINTABLE_ASCII_1_64, description="1-64 printable ASCII characters.")
]
Yen = Annotated[int, msgspec.Meta(ge=1, le=10_000_000, description="Whole yen, 1 to 10,000,000.")]
MyKeyId = Annotated[
    str, msgspec.Meta(pattern=MYKEY_PATTERN, description="MyKey ID: 8 of [A-Za-z0-9].")
]
Campaign = Literal["phase1", "phase2_purchase", "phase2_insurance", "phase2_account"]

CAMPAIGNS: tuple[str, ...] = typing.get_args(Campaign)


class Event(msgspec.Struct, frozen=True, tag_field="type", kw_only=True):
    """Fields every input event carries."""

    event_id: EventId
    person_id: PersonId
    occurred_at: Timestamp


class CardIssued(Event, frozen=True, tag="card.issued"):
    card_applied_on: dt.date
    birth_date: dt.date
    certificate_serial: Ref
    certificate_expires_at: Timestamp


class CertificateRenewed(Event, frozen=True, tag="certificate.renewed"):
    certificate_serial: Ref
    certificate_expires_at: Timestamp
    reason: Literal["renewal", "new_issue"]


class CardSuspended(Event, frozen=True, tag="card.suspended"):
    pass


class CardResumed(Event, frozen=True, tag="card.resumed"):
    pass


class MyKeyReserved(Event, frozen=True, tag="mykey.reserved"):
    mykey_id: MyKeyId


class ServicePreregistered(Event, frozen=True, tag="service.preregistered"):
    service_id: Ref
    service_account: Ref


class InsuranceRegistered(Event, frozen=True, tag="insurance.registered"):
    pass


class AccountRegistered(Event, frozen=True, tag="account.registered"):
    pass


class ServiceLinked(Event, frozen=True, tag="service.linked"):
    campaign: Campaign
    service_id: Ref
    service_account: Ref
    applicant: Literal["self", "proxy"] = "self"


class PaymentRecorded(Event, frozen=True, tag="payment.recorded"):
    service_id: Ref
    service_account: Ref
    transaction_id: Ref
    method: Literal["charge", "purchase"]
    amount_yen: Yen


class PaymentRefunded(Event, frozen=True, tag="payment.refunded"):
    service_id: Ref
    service_account: Ref
    transaction_id: Ref
    amount_yen: Yen


AnyEvent = (
    CardIssued
    | CertificateRenewed
    | CardSuspended
    | CardResumed
    | MyKeyReserved
    | ServicePreregistered
    | InsuranceRegistered
    | AccountRegistered
    | ServiceLinked
    | PaymentRecorded
    | PaymentRefunded
)

EVENT_TYPES: tuple[type[Event], ...] = AnyEvent.__args__  # type: ignore[attr-defined]
TYPE_NAMES: dict[type[Event], str] = {
    cls: cls.__struct_config__.tag for cls in EVENT_TYPES  # type: ignore[misc]
}
TYPES_BY_NAME: dict[str, type[Event]] = {name: cls for cls, name in TYPE_NAMES.items()}
