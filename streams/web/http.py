"""The status API over HTTP, on any engine: the answers, the guard every request passes, and the
headers workers forward requests with. The engines add only how a request reaches the worker that
owns the person's partition, and how that worker reads its state (agents/web.py on Faust,
quix_worker/web.py on Quix Streams).

    GET /persons/{person_id}           the person's current status (streams/web/documents.py)
    GET /persons/{person_id}/history   the person's published outcomes
    GET /openapi.json                  the OpenAPI 3.1 description of the above
    GET /status                        the support desks' page (streams/web/status_page.py)
    GET /livez, GET /readyz            probes: the process serves; the worker can answer

Guarantees, on both engines:
- with a token configured, every request (any path and method, this API's description included)
  without `Authorization: Bearer <token>` is answered 401; the comparison is constant-time; the
  exceptions are `GET /status`, a fixed page that holds no data (its calls carry the token), and
  the probes `GET /livez` and `GET /readyz`, which say only "ok" or why not (and HEAD of these);
- read-only: every method but GET and HEAD (GET without the body) is answered 405, whatever the
  path;
- a malformed person_id is answered 400 and never echoed (a 12-digit id may be a My Number);
- a person's answer comes from the one worker that owns the person's partition; a worker that is
  rebalancing or recovering, or an owner that does not answer within `ROUTE_TIMEOUT`, gives 503
  with `Retry-After`; a stored record no version of the ledger can read gives 500.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web as aioweb

from streams.core.config import RulesConfig
from streams.core.timeline import history as timeline_history
from streams.core.versions import VersionError
from streams.web import status_page
from streams.web.documents import (
    DOC_ENCODER,
    JSON,
    LIVE_PATH,
    READY_PATH,
    ErrorBody,
    ProbeBody,
    ServedBy,
    bearer_ok,
    history_document,
    load_record,
    status_document,
)

log = logging.getLogger("mynapoint.web")

#: How long a request may take, forwarding to the owner included, before it is answered 503.
ROUTE_TIMEOUT = 10.0
RETRY_AFTER_SECONDS = "2"
#: Marks a request one worker forwards to another: the receiver answers from its own state only
#: and never forwards it again (421 when it does not own the person's partition).
FORWARDED_HEADER = "X-Mynapoint-Forwarded"
MISDIRECTED = 421
#: Headers of an owner's answer that a forwarding worker relays.
RELAYED_HEADERS = ("Retry-After", "WWW-Authenticate", "Allow")
BAD_PERSON_ID = "person_id must be 1-64 of [A-Za-z0-9_-] and not a 12-digit number"


def json_response(status: int, body: bytes, headers: dict[str, str] | None = None) -> Any:
    return aioweb.Response(body=body, status=status, content_type=JSON, headers=headers)


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Any:
    return json_response(status, DOC_ENCODER.encode(ErrorBody(error=message)), headers)


def unavailable(message: str) -> Any:
    return error(503, message, {"Retry-After": RETRY_AFTER_SECONDS})


NOT_READY = "the worker is rebalancing or recovering its tables; retry shortly"
NOT_JOINED = "the worker has not joined its consumer group yet: no partitions assigned so far"
#: The methods the API answers; any other is 405.
READ_METHODS = ("GET", "HEAD")
#: Answered without the token (GET or HEAD): they hold no data.
UNGUARDED = frozenset({status_page.PAGE_PATH, LIVE_PATH, READY_PATH})
NO_ANSWER = "the worker that owns this person's partition did not answer; retry"


def make_guard(token: str | None) -> Any:
    """aiohttp middleware for every path: the bearer token (401), then GET and HEAD only (405).
    HEAD is GET without the body (RFC 9110 asks every server for both; load balancers and
    uptime checkers probe with it): the server drops the body, the status and headers stay."""

    @aioweb.middleware
    async def guard(request: Any, handler: Any) -> Any:
        if request.method in READ_METHODS and request.path in UNGUARDED:
            return await handler(request)  # the page (its calls are guarded) and the probes
        if not bearer_ok(request.headers.get("Authorization"), token):
            return error(401, "missing or wrong bearer token",
                         {"WWW-Authenticate": 'Bearer realm="mynapoint"'})
        if request.method not in READ_METHODS:
            return error(405, "this API is read-only: only GET (and HEAD)",
                         {"Allow": ", ".join(READ_METHODS)})
        try:
            return await handler(request)
        except aioweb.HTTPException as exc:
            if exc.status < 400:
                raise
            return error(exc.status, exc.reason.lower())

    return guard


def readiness(joined: bool, busy: bool) -> str | None:
    """Why the worker is not ready to answer for its people (None: it is): it has not had an
    assignment from its group yet, or it is rebalancing or recovering its state."""
    if not joined:
        return NOT_JOINED
    if busy:
        return NOT_READY
    return None


_OK = DOC_ENCODER.encode(ProbeBody(status="ok"))


def probe_answer(problem: str | None) -> Any:
    """A probe's answer: 200 `{"status": "ok"}`, or 503 with `Retry-After` saying why not."""
    return json_response(200, _OK) if problem is None else unavailable(problem)


def unroutable(url: Any) -> bool:
    """True for a canonical URL other workers cannot reach (no host, or a wildcard address)."""
    return (urlsplit(str(url)).hostname or "") in ("", "0.0.0.0", "::")


def warn_about(canonical_url: Any, token: str | None, host: str, port: int) -> None:
    """Start-up warnings: a canonical URL nobody can forward to, and no token."""
    if unroutable(canonical_url):
        log.warning(
            "status API: this worker's canonical URL %s cannot be reached by other workers, so "
            "requests for people on other workers' partitions cannot be forwarded; set "
            "--web-canonical-url (MYNAPOINT_WEB_CANONICAL_URL)", canonical_url)
    if not token:
        log.warning("status API: no --status-token set; the API answers anyone who can reach "
                    "%s:%s", host, port)


def status_answer(person_id: str, raw: bytes | None, rules: RulesConfig,
                  served_by: ServedBy) -> Any:
    """The owner's answer to GET /persons/{person_id}, from the person's stored ledger record
    (`raw`, None: unknown), as of the answering worker's wall clock."""
    try:
        record = load_record(raw)
    except VersionError as exc:
        log.error("status API: %s's stored record cannot be read: %s", person_id, exc)
        return error(500, "this person's stored record cannot be read by this worker "
                     "version; upgrade the workers")
    if record is None:
        return error(404, "no such person")
    now = dt.datetime.fromtimestamp(time.time(), dt.UTC)
    doc = status_document(person_id, record, rules, now, served_by)
    return json_response(200, DOC_ENCODER.encode(doc))


def history_answer(person_id: str, read: Callable[[bytes], bytes | None],
                   known: Callable[[bytes], bool], rules: RulesConfig,
                   served_by: ServedBy) -> Any:
    """The owner's answer to GET /persons/{person_id}/history: `read(key)` reads the timeline's
    store, `known(key)` says whether the person has a ledger record."""
    key = person_id.encode()
    lines = timeline_history(key, read(key), read)
    if lines is None and not known(key):
        return error(404, "no such person")
    return json_response(200, DOC_ENCODER.encode(
        history_document(person_id, lines, served_by, rules)))


@functools.cache
def _page() -> tuple[bytes, dict[str, str]]:
    return status_page.build_page()


def page_response() -> Any:
    body, headers = _page()
    return aioweb.Response(body=body, status=200, content_type="text/html", charset="utf-8",
                           headers=headers)
