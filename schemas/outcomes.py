"""The outcome objects of CONTRACT.md, tagged on `kind`.

Fields beyond the contract's are optional additions (allowed by CONTRACT.md): `outcome_id`, a
deterministic id so consumers can drop exact repeats; `rules_version`, the fingerprint of the
configuration that decided; `late`, set only on decisions about events that arrived out of order.
"""

from __future__ import annotations

import msgspec

from schemas.topics import TOPIC_OF_KIND


class Outcome(msgspec.Struct, frozen=True, tag_field="kind", omit_defaults=True):
    pass


class Decision(Outcome, frozen=True, tag="decision"):
    event_id: str
    person_id: str
    type: str
    accepted: bool
    # No default: the contract wants "reason": null written out on acceptances.
    reason: str | None
    outcome_id: str
    rules_version: str
    late: bool = False


class Grant(Outcome, frozen=True, tag="grant"):
    event_id: str
    person_id: str
    campaign: str
    service_id: str
    points: int
    outcome_id: str
    rules_version: str


class Alert(Outcome, frozen=True, tag="alert"):
    code: str
    event_id: str
    person_id: str
    outcome_id: str
    service_id: str | None = None
    service_account: str | None = None
    # The person who already holds the account (for `account_shared`).
    linked_person_id: str | None = None


class DeadLetter(Outcome, frozen=True, tag="dead_letter"):
    error: str
    reason: str
    outcome_id: str
    line: int | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    event_id: str | None = None
    person_id: str | None = None
    type: str | None = None
    # The offending input, cut to a readable length, with any 12-digit number masked.
    raw: str | None = None


AnyOutcome = Decision | Grant | Alert | DeadLetter

# The output topic of each outcome class, from the one kind -> topic map in schemas/topics.py.
TOPIC_OF_TYPE: dict[type[Outcome], str] = {
    cls: TOPIC_OF_KIND[str(cls.__struct_config__.tag)] for cls in (Decision, Grant, Alert, DeadLetter)
}
