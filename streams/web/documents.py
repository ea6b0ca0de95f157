"""The status API's documents, on any engine: what `GET /persons/{person_id}` and
`GET /persons/{person_id}/history` answer, built from a person's ledger record and timeline, the
request checks (person_id, bearer token) and the OpenAPI 3.1 description of the answers.

Pure: no web server, no engine. Each engine's worker serves them (agents/web.py on Faust,
quix_worker/web.py on Quix Streams) through streams/web/http.py; docs/STATUS_API.md describes
the API for its users.

Guarantees of the documents:
- one person per document, never a listing; in a history, an `account_shared` alert's
  `linked_person_id` (the other person) is left out;
- plain words: a history carries, per outcome, the texts `mynapoint explain` prints (Japanese and
  English, from streams/audit/explain.py);
- minimal exposure: the MyKey ID is reported as set or not, never itself; payment accounts (the
  linked ones, and the one an alert names, which may be another person's) are shown as a hint,
  `****` and their last 4 characters (only when they have 8 or more); no birth date.

Tested without a broker in tests/web/test_documents.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from typing import Annotated, Any, Literal

import msgspec

from schemas.codec import OUTCOME_DECODER
from schemas.events import CAMPAIGNS, PERSON_ID_PATTERN
from schemas.outcomes import Alert, Decision, Grant
from streams.audit.explain import alert_text, decision_text, grant_text
from streams.core.config import RulesConfig
from streams.core.ledger import LedgerRecord
from streams.core.state import EMPTY_STATE, Link, PersonState, service_of_key
from streams.core.timeutil import day_to_date, jst_day, to_jst
from streams.core.versions import decode_ledger_record
from streams.web.status_page import PAGE_PATH

JSON = "application/json"
#: The API's paths (the page's is `status_page.PAGE_PATH`).
STATUS_PATH = "/persons/{person_id}"
HISTORY_PATH = "/persons/{person_id}/history"
OPENAPI_PATH = "/openapi.json"
#: Probes for an orchestrator or a load balancer (docs/STATUS_API.md, "Probes"): the process
#: serves, and the worker can answer for its people. They hold no data: no token is asked.
LIVE_PATH = "/livez"
READY_PATH = "/readyz"


# --- request checks ---------------------------------------------------------------------------


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


def bearer_ok(authorization: str | None, token: str | None) -> bool:
    """True when no token is configured, or `authorization` is `Bearer <token>`.

    The scheme is case-insensitive (RFC 9110); the token is compared in constant time, through
    fixed-length digests so that not even its length leaks.
    """
    if not token:
        return True
    if not authorization:
        return False
    scheme, _, given = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return False
    return hmac.compare_digest(_digest(given.strip()), _digest(token))


# --- documents --------------------------------------------------------------------------------

#: An instant, written in JST (+09:00) like every date of the program.
Instant = Annotated[dt.datetime, msgspec.Meta(tz=True)]


class CardStatus(msgspec.Struct, frozen=True):
    """The My Number Card and its user e-certificate."""

    applied_on: dt.date
    certificate_expires_at: Instant
    certificate_renewed_at: Instant | None
    suspended: bool


class Registrations(msgspec.Struct, frozen=True):
    insurance: bool
    account: bool
    # Service ids with a `service.preregistered` (事前登録) for this person; accounts left out.
    preregistered_services: list[str]


class LinkedService(msgspec.Struct, frozen=True):
    service_id: str
    service_name: str
    # The last 4 characters of the linked account, the rest masked: enough to recognise it.
    service_account_hint: str
    linked_at: Instant


class CampaignStatus(msgspec.Struct, frozen=True):
    kind: Literal["purchase", "flat"]
    linked: LinkedService | None
    points: int
    cap: int
    remaining: int
    # Purchase campaigns: the eligible spend in yen so far; flat campaigns: null.
    eligible_spend_yen: int | None


class RenewalWaitNow(msgspec.Struct, frozen=True):
    """Display only: evaluated on the answering worker's wall clock, never used by any rule."""

    clock: Literal["worker_wall_clock"]
    evaluated_at: Instant
    active: bool
    ends_at: Instant | None


class ServedBy(msgspec.Struct, frozen=True):
    """Operational: the partition of the person and the worker (its canonical URL) that owns it."""

    partition: int
    worker: str


class PersonStatus(msgspec.Struct, frozen=True):
    """GET /persons/{person_id}: one person's current status."""

    person_id: str
    rules_version: str
    card: CardStatus | None
    mykey_set: bool
    registrations: Registrations
    campaigns: dict[str, CampaignStatus]
    renewal_wait_now: RenewalWaitNow
    # Requests that wait for a cross-person check (payment account, budget) and those behind them.
    pending_requests: int
    served_by: ServedBy


HistoryOutcome = Decision | Grant | Alert


class OutcomeText(msgspec.Struct, frozen=True):
    """An outcome in plain words, as `mynapoint explain` says it."""

    ja: str
    en: str


class PersonHistory(msgspec.Struct, frozen=True):
    """GET /persons/{person_id}/history: the person's published outcomes, in order."""

    person_id: str
    outcomes: list[HistoryOutcome]
    # Each outcome in plain words, by its outcome_id.
    texts: dict[str, OutcomeText]
    served_by: ServedBy


class ErrorBody(msgspec.Struct, frozen=True):
    error: str


class ProbeBody(msgspec.Struct, frozen=True):
    status: str  # "ok"


DOC_ENCODER = msgspec.json.Encoder()


def account_hint(account: str) -> str:
    """`****` and the last 4 characters, shown only for accounts of 8 or more (at most half)."""
    return "****" + (account[-4:] if len(account) >= 8 else "")


def load_record(raw: bytes | None) -> LedgerRecord | None:
    """The ledger record stored in the `persons` table (None: the person is unknown), read
    through `streams.core.versions` as the ledger reads it, so a record an earlier version wrote
    is served too. One that no version can read raises `VersionError`."""
    return decode_ledger_record(raw) if raw is not None else None


def renewal_wait_now(
    person: PersonState, rules: RulesConfig, now: dt.datetime
) -> RenewalWaitNow:
    """Whether a request made `now` would be refused `renewal_wait` (the same test as the rule)."""
    ts = now.timestamp()
    card = person.card
    active, ends = False, None
    if card is not None and card.renewed_at is not None:
        end = card.renewed_at + rules.renewal_wait_seconds(jst_day(ts))
        if card.renewed_at <= ts < end:
            active, ends = True, to_jst(end)
    return RenewalWaitNow(clock="worker_wall_clock", evaluated_at=to_jst(ts), active=active,
                          ends_at=ends)


def status_document(
    person_id: str,
    record: LedgerRecord,
    rules: RulesConfig,
    now: dt.datetime,
    served_by: ServedBy,
) -> PersonStatus:
    """The status of a known person (`record` from the `persons` table) as of `now`."""
    person = record.person if record.person is not None else EMPTY_STATE
    card = person.card
    card_status = None
    if card is not None:
        card_status = CardStatus(
            applied_on=day_to_date(card.applied_day),
            certificate_expires_at=to_jst(card.certificate_expires),
            certificate_renewed_at=to_jst(card.renewed_at) if card.renewed_at is not None else None,
            suspended=card.suspended,
        )
    links: dict[str, Link] = {}
    link: Link | None
    for link in person.links:
        links.setdefault(link.campaign, link)
    campaigns = {}
    for name in CAMPAIGNS:
        c = rules.campaigns.get(name)
        if c is None:
            continue
        link = links.get(name)
        linked = None
        if link is not None:
            service = rules.services.get(link.service_id)
            linked = LinkedService(
                service_id=link.service_id,
                service_name=service.name if service is not None else link.service_id,
                service_account_hint=account_hint(link.service_account),
                linked_at=to_jst(link.linked_at),
            )
        points = person.points.get(name, 0)
        campaigns[name] = CampaignStatus(
            kind="flat" if c.flat else "purchase",
            linked=linked,
            points=points,
            cap=c.cap,
            remaining=max(c.cap - points, 0),
            eligible_spend_yen=None if c.flat else person.spend.get(name, 0),
        )
    return PersonStatus(
        person_id=person_id,
        rules_version=rules.version,
        card=card_status,
        mykey_set=person.mykey_id is not None,
        registrations=Registrations(
            insurance=person.insurance_registered,
            account=person.account_registered,
            preregistered_services=sorted({service_of_key(k) for k in person.preregistered}),
        ),
        campaigns=campaigns,
        renewal_wait_now=renewal_wait_now(person, rules, now),
        pending_requests=(1 if record.waiting is not None else 0) + len(record.queue),
        served_by=served_by,
    )


def outcome_text(o: HistoryOutcome, rules: RulesConfig) -> OutcomeText:
    """The outcome in plain words, with explain's very functions (one source for the texts)."""
    if type(o) is Decision:
        ja, en = decision_text(o)
    elif type(o) is Grant:
        ja, en = grant_text(o, rules)
    else:
        ja, en = alert_text(o)  # type: ignore[arg-type]
    return OutcomeText(ja=ja, en=en)


def history_document(person_id: str, lines: bytes | None, served_by: ServedBy,
                     rules: RulesConfig) -> PersonHistory:
    """The person's outcomes in publication order; another person's id is never included."""
    outcomes: list[HistoryOutcome] = []
    for o in OUTCOME_DECODER.decode_lines(lines) if lines else ():
        if not isinstance(o, Decision | Grant | Alert) or o.person_id != person_id:
            continue
        if type(o) is Alert:
            # The account may be another person's (that is what `account_shared` says): a hint.
            o = msgspec.structs.replace(
                o,
                linked_person_id=None,
                service_account=account_hint(o.service_account) if o.service_account else None,
            )
        outcomes.append(o)
    # After the redaction above: an alert's text then says "another person", never who.
    texts = {o.outcome_id: outcome_text(o, rules) for o in outcomes}
    return PersonHistory(person_id=person_id, outcomes=outcomes, texts=texts, served_by=served_by)


# --- OpenAPI ----------------------------------------------------------------------------------


def openapi_document(token_required: bool) -> dict[str, Any]:
    """OpenAPI 3.1: the schemas come from the very Structs the views encode, so they cannot drift."""
    _, components = msgspec.json.schema_components(
        (PersonStatus, PersonHistory, ErrorBody, ProbeBody), ref_template="#/components/schemas/{name}"
    )
    # The status API never reveals the other person of an `account_shared` alert.
    alert = components["Alert"]["properties"]
    alert.pop("linked_person_id", None)
    alert["service_account"]["description"] = "Masked: `****` and the last 4 characters (of 8 or more)."
    ref = "#/components/schemas/{}".format
    person_param = {
        "name": "person_id",
        "in": "path",
        "required": True,
        "description": "The opaque person id of CONTRACT.md; a bare 12-digit number is refused.",
        "schema": {"type": "string", "pattern": PERSON_ID_PATTERN},
    }

    def error(description: str) -> dict[str, Any]:
        return {"description": description,
                "content": {JSON: {"schema": {"$ref": ref("ErrorBody")}}}}

    def person_op(summary: str, schema: str, description: str) -> dict[str, Any]:
        responses = {
            "200": {"description": "OK", "content": {JSON: {"schema": {"$ref": ref(schema)}}}},
            "400": error("person_id is not a valid person id"),
            "404": error("no such person"),
            "500": error("the person's stored record cannot be read by this worker version: "
                         "upgrade the workers"),
            "503": error("the owning worker is rebalancing, recovering or did not answer: retry"),
        }
        if token_required:
            responses["401"] = error("missing or wrong bearer token")
        return {"summary": summary, "description": description, "parameters": [person_param],
                "responses": responses}

    def probe_op(summary: str, description: str, unready: str | None) -> dict[str, Any]:
        responses = {"200": {"description": "OK",
                             "content": {JSON: {"schema": {"$ref": ref("ProbeBody")}}}}}
        if unready is not None:
            responses["503"] = error(unready)
        return {"summary": summary, "description": description + " Served without the token.",
                "security": [], "responses": responses}

    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Mynapoint status API",
            "version": "1",
            "description": (
                "Read-only status of one person at a time, answered by the worker that owns the "
                "person's partition (other workers forward the request). See docs/STATUS_API.md."
            ),
        },
        "paths": {
            STATUS_PATH: {"get": person_op(
                "A person's current status", "PersonStatus",
                "Card, MyKey (set or not), registrations, linked service, points and what remains "
                "to the cap per campaign. `renewal_wait_now` is evaluated on the worker's wall "
                "clock for display only; every rule uses the events' own times.")},
            HISTORY_PATH: {"get": person_op(
                "A person's published outcomes", "PersonHistory",
                "Decisions, grants and alerts, in the order they were published, and each in "
                "plain words (`texts`, by outcome_id: what `mynapoint explain` says).")},
            PAGE_PATH: {"get": {
                "summary": "The support desks' status page",
                "description": "A fixed HTML page without data, served without the token; it "
                               "calls the two endpoints above with the token staff type in.",
                "security": [],
                "responses": {"200": {"description": "HTML page",
                                      "content": {"text/html": {"schema": {"type": "string"}}}}},
            }},
            LIVE_PATH: {"get": probe_op(
                "Liveness", "The worker's process serves HTTP: 200 whenever it answers at all.",
                None)},
            READY_PATH: {"get": probe_op(
                "Readiness",
                "The worker has joined its consumer group and is neither rebalancing nor "
                "recovering its state, so it can answer for its people (and forward the rest).",
                "not ready: not yet in its group, rebalancing or recovering; retry")},
            OPENAPI_PATH: {"get": {
                "summary": "This description",
                "responses": {"200": {"description": "OpenAPI 3.1 document",
                                      "content": {JSON: {"schema": {"type": "object"}}}}},
            }},
        },
        "components": {"schemas": components},
    }
    if token_required:
        doc["components"]["securitySchemes"] = {"bearerAuth": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearerAuth": []}]
    return doc
