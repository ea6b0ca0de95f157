"""The status API's engine-independent parts (streams/web/): documents from ledger records, the
token check, the guard middleware, and the OpenAPI description the answers must fit."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import msgspec
import pytest

from schemas.codec import OUTCOME_ENCODER
from schemas.journal import AnswerEntry, EventEntry
from schemas.outcomes import Alert, Decision, Grant
from streams.core import versions as V
from streams.core.claims import Claims
from streams.core.config import build_config
from streams.core.ledger import RECORD_ENCODER, LedgerRecord, fold, remembered_lines
from streams.core.timeline import history, writes_after_fold
from streams.web import documents as web
from streams.web import http
from tests.builders import (
    card,
    insurance,
    link,
    pay,
    phase1_linked,
    phase1_ready,
    phase2_ready,
    prereg,
    refund,
    renew,
    reserve,
    suspend,
)
from tests.schema_shapes import assert_fits, errors, resolve

CFG = build_config({"services": [
    {"id": "demo-pay", "name": "Demo Pay"},
    {"id": "pre-pay", "name": "Pre Pay", "preregistration_required": True},
]})
JST = dt.timezone(dt.timedelta(hours=9))
SERVED = web.ServedBy(partition=3, worker="http://127.0.0.1:6066")
DOC = web.openapi_document(token_required=True)
STATUS_PATH = "/persons/{person_id}"
HISTORY_PATH = "/persons/{person_id}/history"


def ledger(events: list[dict[str, Any]]) -> tuple[dict[str, LedgerRecord], dict[str, bytes]]:
    """The ledger agent in memory: records and timelines (as the `persons`/`timeline` tables)."""
    claims = Claims(CFG.reservation_budget)
    records: dict[str, LedgerRecord] = {}
    timelines: dict[str, bytes] = {}
    tables: dict[bytes, bytes] = {}  # the `timeline` table, in chunks of 4 lines
    journal: list[Any] = [
        EventEntry(topic="mynapoint.links", partition=0, offset=i,
                   value=msgspec.json.encode(e))
        for i, e in enumerate(events)
    ]
    while journal:
        entry = journal.pop(0)
        person = entry.person_id if type(entry) is AnswerEntry else msgspec.json.decode(
            entry.value)["person_id"]
        folded = fold(records.get(person), entry, CFG)
        records[person] = folded.record
        if folded.outcomes:
            for key, value in writes_after_fold(person.encode(), tables.get(person.encode()),
                                                remembered_lines(folded.record),
                                                chunk_lines=4):
                tables[key] = value
        for req in folded.claims:
            ans = (claims.account(req.key, req.person_id) if req.kind == "account"
                   else claims.reservation(req.person_id))
            journal.insert(0, AnswerEntry(claim_kind=req.kind, claim_key=req.key,
                                          person_id=req.person_id, event_id=req.event_id,
                                          granted=ans.granted, holder=ans.holder))
    for person in records:
        lines = history(person.encode(), tables.get(person.encode()), tables.get)
        if lines is not None:
            timelines[person] = lines
    return records, timelines


def as_json(doc: Any) -> dict[str, Any]:
    return msgspec.json.decode(web.DOC_ENCODER.encode(doc))


NOW = dt.datetime(2025, 1, 1, 12, 0, tzinfo=JST)


# --- the token --------------------------------------------------------------------


@pytest.mark.parametrize("header, token, ok", [
    (None, None, True),
    ("anything", None, True),
    (None, "", True),            # an empty token means "not configured"
    (None, "s3cret", False),
    ("", "s3cret", False),
    ("Bearer s3cret", "s3cret", True),
    ("bearer s3cret", "s3cret", True),   # the scheme is case-insensitive
    ("BEARER  s3cret ", "s3cret", True),
    ("Bearer s3cre", "s3cret", False),
    ("Bearer s3cretX", "s3cret", False),
    ("Bearer", "s3cret", False),
    ("Bearer ", "s3cret", False),
    ("s3cret", "s3cret", False),
    ("Basic s3cret", "s3cret", False),
    ("Token s3cret", "s3cret", False),
])
def test_bearer_token_check(header, token, ok):
    assert web.bearer_ok(header, token) is ok


def test_token_is_compared_in_constant_time(monkeypatch):
    calls = []
    real = web.hmac.compare_digest

    def spy(a, b):
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(web.hmac, "compare_digest", spy)
    assert not web.bearer_ok("Bearer short", "a-much-longer-token")
    assert web.bearer_ok("Bearer a-much-longer-token", "a-much-longer-token")
    assert calls == [(32, 32), (32, 32)]  # digests: not even the length is compared directly


# --- the status document --------------------------------------------------------------------


def test_status_of_a_linked_person_with_payments():
    events = [
        *phase1_linked("P1", account="acct-12345678"),
        pay("P1", txn="T1", amount=8000, account="acct-12345678"),
        pay("P1", txn="T2", amount=4000, account="acct-12345678"),
        refund("P1", txn="T2", amount=1000, account="acct-12345678"),
        prereg("P1", service="pre-pay", account="pre-acct"),
    ]
    records, _ = ledger(events)
    doc = web.status_document("P1", records["P1"], CFG, NOW, SERVED)
    got = as_json(doc)
    assert_fits(got, DOC, STATUS_PATH, 200)
    assert got["person_id"] == "P1"
    assert got["rules_version"] == CFG.version
    assert got["card"] == {
        "applied_on": "2020-05-01",
        "certificate_expires_at": "2031-01-01T00:00:00+09:00",
        "certificate_renewed_at": None,
        "suspended": False,
    }
    assert got["mykey_set"] is True
    assert got["registrations"] == {"insurance": False, "account": False,
                                    "preregistered_services": ["pre-pay"]}
    phase1 = got["campaigns"]["phase1"]
    # 8,000 + 4,000 - 1,000 = 11,000 yen eligible; 25% = 2,750 points.
    assert phase1 == {
        "kind": "purchase",
        "linked": {"service_id": "demo-pay", "service_name": "Demo Pay",
                   "service_account_hint": "****5678",
                   "linked_at": "2020-08-01T10:00:00+09:00"},
        "points": 2750, "cap": 5000, "remaining": 2250, "eligible_spend_yen": 11000,
    }
    assert got["campaigns"]["phase2_insurance"] == {
        "kind": "flat", "linked": None, "points": 0, "cap": 7500, "remaining": 7500,
        "eligible_spend_yen": None,
    }
    assert list(got["campaigns"]) == ["phase1", "phase2_purchase", "phase2_insurance",
                                      "phase2_account"]
    assert got["pending_requests"] == 0
    assert got["served_by"] == {"partition": 3, "worker": "http://127.0.0.1:6066"}


def test_points_at_the_cap_leave_nothing_and_flat_grants_count():
    events = [
        *phase1_linked("P1"),
        pay("P1", txn="T1", amount=30000),
        *phase2_ready("P2"),
        insurance("P2", at="2022-11-03T09:00:00+09:00"),
        link("P2", at="2022-11-03T10:00:00+09:00", campaign="phase2_insurance", account="ins-1"),
    ]
    records, _ = ledger(events)
    p1 = as_json(web.status_document("P1", records["P1"], CFG, NOW, SERVED))
    assert p1["campaigns"]["phase1"]["points"] == 5000
    assert p1["campaigns"]["phase1"]["remaining"] == 0
    p2 = as_json(web.status_document("P2", records["P2"], CFG, NOW, SERVED))
    assert p2["registrations"]["insurance"] is True
    assert p2["campaigns"]["phase2_insurance"]["points"] == 7500
    assert p2["campaigns"]["phase2_insurance"]["remaining"] == 0
    assert p2["campaigns"]["phase2_insurance"]["linked"]["service_account_hint"] == "****"
    assert_fits(p2, DOC, STATUS_PATH, 200)


def test_the_mykey_id_birth_date_and_full_accounts_are_never_exposed():
    records, _ = ledger([*phase1_linked("P1", account="acct-SECRET-9876"),
                         reserve("P1", mykey="ZZKEY999")])
    body = web.DOC_ENCODER.encode(web.status_document("P1", records["P1"], CFG, NOW, SERVED))
    assert b"MYKEY001" not in body and b"ZZKEY999" not in body
    assert b"1980" not in body  # the birth date
    assert b"acct-SECRET" not in body and b"****9876" in body


def test_a_person_with_only_a_refused_event_is_known_and_empty():
    records, _ = ledger([reserve("P9")])  # no card: refused no_card
    got = as_json(web.status_document("P9", records["P9"], CFG, NOW, SERVED))
    assert got["card"] is None and got["mykey_set"] is False
    assert all(c["points"] == 0 and c["linked"] is None for c in got["campaigns"].values())
    assert_fits(got, DOC, STATUS_PATH, 200)
    assert web.load_record(None) is None


def test_a_record_stored_by_an_older_version_is_served():
    # The status API reads `persons` through streams.core.versions, as the ledger does.
    records, _ = ledger([card("P1"), reserve("P1")])
    current = records["P1"]
    old = V.ledger_record_v0(current)
    assert old != RECORD_ENCODER.encode(current)
    assert web.load_record(old) == current
    with pytest.raises(V.VersionError):
        web.load_record(b"\x01garbage")


def test_suspension_shows():
    records, _ = ledger([card("P1"), suspend("P1")])
    got = as_json(web.status_document("P1", records["P1"], CFG, NOW, SERVED))
    assert got["card"]["suspended"] is True


@pytest.mark.parametrize("now, active, ends_at", [
    # Renewed 2025-03-01 10:00 JST; from 2022 on the wait is 1 hour (seed 002).
    ("2025-03-01T09:59:59+09:00", False, None),
    ("2025-03-01T10:00:00+09:00", True, "2025-03-01T11:00:00+09:00"),
    ("2025-03-01T10:59:59+09:00", True, "2025-03-01T11:00:00+09:00"),
    ("2025-03-01T11:00:00+09:00", False, None),
    ("2025-03-01T01:30:00+00:00", True, "2025-03-01T11:00:00+09:00"),
])
def test_renewal_wait_now_uses_the_given_clock_and_the_rule(now, active, ends_at):
    records, _ = ledger([card("P1"), renew("P1", at="2025-03-01T10:00:00+09:00")])
    at = dt.datetime.fromisoformat(now)
    got = as_json(web.status_document("P1", records["P1"], CFG, at, SERVED))
    assert got["renewal_wait_now"] == {
        "clock": "worker_wall_clock",
        "evaluated_at": at.astimezone(JST).isoformat(),
        "active": active,
        "ends_at": ends_at,
    }
    assert got["card"]["certificate_renewed_at"] == "2025-03-01T10:00:00+09:00"


def test_renewal_wait_before_2022_is_24_hours():
    records, _ = ledger([card("P1"), renew("P1", at="2021-06-01T10:00:00+09:00")])
    at = dt.datetime(2021, 6, 2, 9, 0, tzinfo=JST)
    got = as_json(web.status_document("P1", records["P1"], CFG, at, SERVED))
    assert got["renewal_wait_now"]["active"] is True
    assert got["renewal_wait_now"]["ends_at"] == "2021-06-02T10:00:00+09:00"


def test_a_request_waiting_for_its_claim_is_counted_as_pending():
    records, _ = ledger(phase1_ready("P3"))
    rec = records["P3"]
    for offset, e in enumerate([link("P3"), pay("P3")], start=100):
        entry = EventEntry(topic="mynapoint.links", partition=0, offset=offset,
                           value=msgspec.json.encode(e))
        rec = fold(rec, entry, CFG).record
    assert rec.waiting is not None and len(rec.queue) == 1  # the link waits for its account claim
    got = as_json(web.status_document("P3", rec, CFG, NOW, SERVED))
    assert got["pending_requests"] == 2
    assert got["campaigns"]["phase1"]["linked"] is None


# --- the history document -------------------------------------------------------------------


def test_history_in_order_without_the_other_person_of_a_shared_account():
    events = [
        *phase1_linked("A", account="shared-acct-4321"),
        *phase1_linked("B", account="shared-acct-4321"),  # refused: account_linked_elsewhere
        pay("A", txn="T1", amount=400, account="shared-acct-4321"),
    ]
    _, timelines = ledger(events)
    history = as_json(web.history_document("B", timelines["B"], SERVED, CFG))
    assert_fits(history, DOC, HISTORY_PATH, 200)
    kinds = [(o["kind"], o.get("type"), o.get("reason"), o.get("code"))
             for o in history["outcomes"]]
    assert kinds == [
        ("decision", "card.issued", None, None),
        ("decision", "mykey.reserved", None, None),
        ("decision", "service.linked", "account_linked_elsewhere", None),
        ("alert", None, None, "account_shared"),
    ]
    alert = history["outcomes"][-1]
    assert "linked_person_id" not in alert
    assert alert["service_account"] == "****4321"
    encoded = web.DOC_ENCODER.encode(web.history_document("B", timelines["B"], SERVED, CFG))
    assert b'"A"' not in encoded and "A の方".encode() not in encoded and b"to A " not in encoded
    # Every outcome in plain words, with explain's texts; the alert names no one.
    texts = history["texts"]
    assert set(texts) == {o["outcome_id"] for o in history["outcomes"]}
    refused = texts[history["outcomes"][2]["outcome_id"]]
    assert refused["ja"].startswith("不受理（account_linked_elsewhere）: この決済アカウントは既に別の方")
    assert refused["en"].startswith("refused (account_linked_elsewhere): this payment account is")
    assert texts[history["outcomes"][0]["outcome_id"]] == {"ja": "受付", "en": "accepted"}
    shared = texts[alert["outcome_id"]]
    assert "既に別の方に紐付けられています" in shared["ja"]
    assert "already linked to another person" in shared["en"]

    a = as_json(web.history_document("A", timelines["A"], SERVED, CFG))
    grants = [o for o in a["outcomes"] if o["kind"] == "grant"]
    assert [g["points"] for g in grants] == [100]
    assert a["texts"][grants[0]["outcome_id"]] == {
        "ja": "+100 ポイント付与（第1弾（買い物ポイント））",
        "en": "+100 points granted (phase 1 (purchases))"}
    assert all(o["person_id"] == "A" for o in a["outcomes"])
    assert_fits(a, DOC, HISTORY_PATH, 200)


def test_history_drops_outcomes_of_anyone_else_and_copes_with_nothing():
    mine = Decision(event_id="e1", person_id="P1", type="card.issued", accepted=True, reason=None,
                    outcome_id="o1", rules_version="r")
    theirs = Grant(event_id="e2", person_id="P2", campaign="phase1", service_id="s", points=5,
                   outcome_id="o2", rules_version="r")
    alert = Alert(code="account_shared", event_id="e3", person_id="P1", outcome_id="o3",
                  service_id="s", service_account="ab", linked_person_id="P2")
    lines = OUTCOME_ENCODER.encode_lines([mine, theirs, alert])
    got = as_json(web.history_document("P1", lines, SERVED, CFG))
    assert [o["outcome_id"] for o in got["outcomes"]] == ["o1", "o3"]
    assert got["outcomes"][1] == {"kind": "alert", "code": "account_shared", "event_id": "e3",
                                  "person_id": "P1", "outcome_id": "o3", "service_id": "s",
                                  "service_account": "****"}
    assert as_json(web.history_document("P1", None, SERVED, CFG))["outcomes"] == []


# --- the OpenAPI description ----------------------------------------------------------------


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values()
                                                             for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_openapi_document_is_3_1_and_self_contained():
    for doc in (web.openapi_document(True), web.openapi_document(False)):
        assert doc["openapi"] == "3.1.0"
        assert set(doc["paths"]) == {STATUS_PATH, HISTORY_PATH, "/openapi.json", "/status",
                                     "/livez", "/readyz"}
        for probe in ("/livez", "/readyz"):
            assert doc["paths"][probe]["get"]["security"] == []
        assert doc["paths"]["/status"]["get"]["security"] == []  # the page holds no data
        for path, item in doc["paths"].items():
            assert set(item) == {"get"}, path  # read-only
        for ref in _refs(doc):
            resolve(doc, ref)
        msgspec.json.encode(doc)  # serialisable as is
    with_token, without = web.openapi_document(True), web.openapi_document(False)
    assert with_token["security"] == [{"bearerAuth": []}]
    assert with_token["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert "security" not in without
    assert "401" in with_token["paths"][STATUS_PATH]["get"]["responses"]
    assert "linked_person_id" not in with_token["components"]["schemas"]["Alert"]["properties"]


def test_the_shape_checker_catches_missing_and_undescribed_keys():
    records, _ = ledger(phase1_linked("P1"))
    good = as_json(web.status_document("P1", records["P1"], CFG, NOW, SERVED))
    schema = {"$ref": "#/components/schemas/PersonStatus"}
    assert errors(good, schema, DOC) == []
    missing = {k: v for k, v in good.items() if k != "campaigns"}
    assert any("campaigns" in e for e in errors(missing, schema, DOC))
    extra = {**good, "mykey_id": "MYKEY001"}
    assert any("mykey_id" in e for e in errors(extra, schema, DOC))
    wrong = {**good, "card": {**good["card"], "applied_on": "yesterday"}}
    assert errors(wrong, schema, DOC)
    assert errors({"error": 1}, {"$ref": "#/components/schemas/ErrorBody"}, DOC)


# --- the guard middleware, on a real aiohttp server -----------------------------------------


def _serve(token: str | None, requests: list[tuple[str, str, dict[str, str]]]):
    from aiohttp import web as aioweb
    from aiohttp.test_utils import TestClient, TestServer

    async def ok(request):
        return aioweb.json_response({"ok": True})

    async def run():
        app = aioweb.Application(middlewares=[http.make_guard(token)])
        app.router.add_get("/persons/{person_id}", ok)
        app.router.add_get("/status", ok)
        app.router.add_get("/livez", ok)
        app.router.add_get("/readyz", ok)
        async with TestClient(TestServer(app)) as client:
            out = []
            for method, path, headers in requests:
                resp = await client.request(method, path, headers=headers)
                out.append((resp.status, resp.headers.get("Content-Type", ""), await resp.text(),
                            dict(resp.headers)))
            return out

    return asyncio.run(run())


def test_guard_asks_for_the_token_on_every_path_and_method():
    auth = {"Authorization": "Bearer tok"}
    out = _serve("tok", [
        ("GET", "/persons/P1", {}),
        ("GET", "/persons/P1", {"Authorization": "Bearer nope"}),
        ("GET", "/nowhere", {}),
        ("POST", "/persons/P1", {}),
        ("GET", "/persons/P1", auth),
        ("POST", "/persons/P1", auth),
        ("DELETE", "/persons/P1", auth),
        ("GET", "/nowhere", auth),
    ])
    statuses = [o[0] for o in out]
    assert statuses == [401, 401, 401, 401, 200, 405, 405, 404]
    for status, ctype, body, headers in out:
        assert ctype.startswith("application/json")
        if status != 200:
            assert set(msgspec.json.decode(body)) == {"error"}
        if status == 401:
            assert headers["WWW-Authenticate"].startswith("Bearer")
        if status == 405:
            assert headers["Allow"] == "GET, HEAD"


def test_guard_lets_only_a_get_or_head_of_the_page_through_without_the_token():
    out = _serve("tok", [
        ("GET", "/status", {}),
        ("GET", "/status", {"Authorization": "Bearer nope"}),
        ("POST", "/status", {}),
        ("GET", "/status/", {}),
        ("GET", "/status?x=1", {}),
        ("GET", "/persons/P1?page=/status", {}),
        ("GET", "/STATUS", {}),
    ])
    assert [o[0] for o in out] == [200, 200, 401, 401, 200, 401, 401]


def test_guard_lets_only_a_get_or_head_of_the_probes_through_without_the_token():
    out = _serve("tok", [
        ("GET", "/livez", {}),
        ("GET", "/readyz", {}),
        ("GET", "/readyz", {"Authorization": "Bearer nope"}),
        ("POST", "/readyz", {}),
        ("GET", "/readyz/", {}),
        ("GET", "/persons/P1?probe=/readyz", {}),
    ])
    assert [o[0] for o in out] == [200, 200, 200, 401, 401, 401]


@pytest.mark.parametrize(("joined", "busy", "said"), [
    (False, False, "not joined its consumer group"),
    (False, True, "not joined its consumer group"),
    (True, True, "rebalancing or recovering"),
    (True, False, None),
])
def test_readiness(joined, busy, said):
    problem = http.readiness(joined, busy)
    assert (problem is None) if said is None else (said in problem)


def test_a_probe_says_ok_or_why_not_with_a_retry():
    ok = http.probe_answer(None)
    assert ok.status == 200 and msgspec.json.decode(ok.body) == {"status": "ok"}
    assert_fits(msgspec.json.decode(ok.body), DOC, "/readyz", 200)
    busy = http.probe_answer(http.NOT_READY)
    assert busy.status == 503 and busy.headers["Retry-After"]
    assert_fits(msgspec.json.decode(busy.body), DOC, "/readyz", 503)


def test_head_is_get_without_the_body_under_the_same_guard():
    # RFC 9110 asks every server for GET and HEAD; load balancers and uptime checkers use HEAD.
    out = _serve("tok", [
        ("HEAD", "/persons/P1", {"Authorization": "Bearer tok"}),
        ("HEAD", "/persons/P1", {}),
        ("HEAD", "/readyz", {}),
        ("HEAD", "/status", {}),
        ("OPTIONS", "/persons/P1", {"Authorization": "Bearer tok"}),
    ])
    assert [o[0] for o in out] == [200, 401, 200, 200, 405]
    assert [o[2] for o in out[:4]] == ["", "", "", ""]
    assert out[0][1].startswith("application/json")


def test_guard_without_a_token_is_read_only_only():
    out = _serve(None, [("GET", "/persons/P1", {}), ("PUT", "/persons/P1", {})])
    assert [o[0] for o in out] == [200, 405]
