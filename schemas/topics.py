"""Topic names (part of the public contract), and which input topic carries which event type.

Pure data, in `schemas/` with the event and outcome formats: the agents, `mynapoint produce`, the
replay core (`streams/audit/replay.py`), the tests and the benchmarks all take the names from here.
"""

from __future__ import annotations

# Inputs: record key = person_id (UTF-8), value = the JSON event of CONTRACT.md.
CARDS = "mynapoint.cards"
CERTIFICATES = "mynapoint.certificates"
RESERVATIONS = "mynapoint.reservations"
REGISTRATIONS = "mynapoint.registrations"
LINKS = "mynapoint.links"
PAYMENTS = "mynapoint.payments"

INPUT_TOPICS: tuple[str, ...] = (CARDS, CERTIFICATES, RESERVATIONS, REGISTRATIONS, LINKS, PAYMENTS)

# Outputs: the outcome objects of CONTRACT.md. Decisions, grants and alerts are keyed by person_id;
# dead letters by the source record's key when it had one.
DECISIONS = "mynapoint.decisions"
GRANTS = "mynapoint.grants"
ALERTS = "mynapoint.alerts"
DEADLETTER = "mynapoint.deadletter"

OUTPUT_TOPICS: tuple[str, ...] = (DECISIONS, GRANTS, ALERTS, DEADLETTER)

# Which output topic carries an outcome of each `kind` (the tag of schemas/outcomes.py).
TOPIC_OF_KIND: dict[str, str] = {"decision": DECISIONS, "grant": GRANTS, "alert": ALERTS,
                                 "dead_letter": DEADLETTER}

# Internal. The journal is the ordered per-person record the ledger folds (events and the answers
# to cross-person claims); it is what replay reads. Claims are keyed by payment account (or by the
# single budget key), so one partition owns each account.
JOURNAL = "mynapoint.journal"
CLAIMS = "mynapoint.claims"

TOPIC_BY_TYPE: dict[str, str] = {
    "card.issued": CARDS,
    "card.suspended": CARDS,
    "card.resumed": CARDS,
    "certificate.renewed": CERTIFICATES,
    "mykey.reserved": RESERVATIONS,
    "insurance.registered": REGISTRATIONS,
    "account.registered": REGISTRATIONS,
    "service.preregistered": REGISTRATIONS,
    "service.linked": LINKS,
    "payment.recorded": PAYMENTS,
    "payment.refunded": PAYMENTS,
}

DEFAULT_PARTITIONS = 4


def changelog_topic(app_id: str, table: str = "persons") -> str:
    """Faust names a table's changelog topic f"{app_id}-{table}-changelog"."""
    return f"{app_id}-{table}-changelog"
