"""The status API (streams/web/) on a Quix Streams worker: an aiohttp server in its own thread.

Quix's loop owns the main thread, so the server runs its own event loop beside it and reads the
ledger's state through `private.StateReads`: what the last checkpoint wrote (at most the commit
interval, one second, behind the journal).

A person's record and timeline live in the journal partition of the person's key (Kafka's murmur2,
as every topic). When this worker holds that partition, it answers. Otherwise it forwards the
request (path and `Authorization`, marked with `FORWARDED_HEADER`) to the other workers of the
group, found from the group's description (streams/web/peers.py: each worker's client id carries
its canonical URL), the last owner it learned first. A worker asked that way answers from its own
state or says 421, and never forwards again. Nobody answering within `ROUTE_TIMEOUT` gives 503.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import aiohttp
from aiohttp import web as aioweb

from quix_worker import private
from schemas import topics
from schemas.events import valid_person_id
from streams.core.config import RulesConfig
from streams.web.documents import (
    DOC_ENCODER,
    HISTORY_PATH,
    LIVE_PATH,
    OPENAPI_PATH,
    READY_PATH,
    STATUS_PATH,
    ServedBy,
    openapi_document,
)
from streams.web.http import (
    BAD_PERSON_ID,
    FORWARDED_HEADER,
    MISDIRECTED,
    NO_ANSWER,
    NOT_READY,
    RELAYED_HEADERS,
    ROUTE_TIMEOUT,
    error,
    history_answer,
    json_response,
    make_guard,
    page_response,
    probe_answer,
    readiness,
    status_answer,
    unavailable,
    warn_about,
)
from streams.web.peers import Owners, urls_of
from streams.web.status_page import PAGE_PATH

log = logging.getLogger("mynapoint.web")

#: How long the group's member list is reused before it is described again (seconds).
PEERS_TTL = 2.0


class _Peers:
    """The canonical URLs of the group's workers, described at most every `PEERS_TTL` s."""

    def __init__(self, bootstrap: str, group: str, client_kwargs: dict[str, Any]) -> None:
        self.bootstrap, self.group, self.kwargs = bootstrap, group, client_kwargs
        self.admin: Any = None
        self.urls: list[str] = []
        self.at = -PEERS_TTL

    async def get(self, fresh: bool = False) -> list[str]:
        from aiokafka.admin import AIOKafkaAdminClient

        from clients.admin import any_broker, group_members

        if not fresh and time.monotonic() - self.at < PEERS_TTL:
            return self.urls
        if self.admin is None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, **self.kwargs)
            try:
                await admin.start()
            except BaseException:
                await admin.close()
                raise
            self.admin = admin
        # Asked again of another broker while one that died is still in the metadata.
        self.urls = urls_of(await any_broker(lambda: group_members(self.admin, self.group),
                                             time.monotonic() + ROUTE_TIMEOUT))
        self.at = time.monotonic()
        return self.urls


class StatusServer:
    """Serves the status API of one Quix worker; `start()` before the app runs."""

    def __init__(self, reads: private.StateReads, rules: RulesConfig, *, host: str, port: int,
                 canonical_url: str, token: str | None, partitions: int, bootstrap: str,
                 group: str, client_kwargs: dict[str, Any] | None = None) -> None:
        self.reads, self.rules = reads, rules
        self.host, self.port, self.url = host, port, canonical_url
        self.token = token or None
        self.partitions = partitions
        self.peers = _Peers(bootstrap, group, client_kwargs or {})
        self.owners = Owners()
        self.openapi_body = DOC_ENCODER.encode(openapi_document(self.token is not None))
        self.session: aiohttp.ClientSession | None = None
        self.ready = threading.Event()

    # --- reading this worker's state --------------------------------------------------------

    def _local(self, person_id: str, key: bytes, partition: int, history: bool) -> Any:
        """The answer from this worker's state, or `private.NOT_OWNED` / `RECOVERING`."""
        served_by = ServedBy(partition=partition, worker=self.url)
        persons, timeline = topics.QUIX_PERSONS_TAG, topics.QUIX_TIMELINE_TAG

        def answer(get: Any) -> Any:
            record = get(topics.quix_state_key(key, persons, key))
            if not history:
                return status_answer(person_id, record, self.rules, served_by)
            return history_answer(
                person_id, lambda k: get(topics.quix_state_key(key, timeline, k)),
                lambda _k: record is not None, self.rules, served_by)

        try:
            return self.reads.read(partition, answer)
        except Exception as exc:  # noqa: BLE001 - a store closed under a shutting-down worker
            log.warning("status API: reading partition %s failed: %r", partition, exc)
            return private.RECOVERING

    # --- forwarding to the owner ------------------------------------------------------------

    async def _forward(self, request: Any, partition: int) -> Any:
        assert self.session is not None
        headers = {FORWARDED_HEADER: "1"}
        if "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        for fresh in (False, True):
            for peer in self.owners.candidates(partition, await self.peers.get(fresh), self.url):
                try:
                    async with self.session.request(request.method, peer + request.path_qs,
                                                    headers=headers,
                                                    allow_redirects=False) as resp:
                        body = await resp.read()
                except (aiohttp.ClientError, OSError) as exc:
                    log.info("status API: %s did not answer: %r", peer, exc)
                    continue
                if resp.status == MISDIRECTED:
                    self.owners.misdirected(partition, peer)
                    continue
                if resp.status < 500:
                    self.owners.answered(partition, peer)
                relayed = {h: resp.headers[h] for h in RELAYED_HEADERS if h in resp.headers}
                return aioweb.Response(body=body, status=resp.status, headers=relayed,
                                       content_type=resp.content_type)
        return unavailable(NO_ANSWER)

    async def _person(self, request: Any, history: bool) -> Any:
        person_id = request.match_info["person_id"]
        if not valid_person_id(person_id):
            return error(400, BAD_PERSON_ID)
        key = person_id.encode()
        partition = topics.partition_for_key(key, self.partitions)
        local = self._local(person_id, key, partition, history)
        if local is private.RECOVERING:
            return unavailable(NOT_READY)
        if local is not private.NOT_OWNED:
            return local
        if request.headers.get(FORWARDED_HEADER):
            return error(MISDIRECTED, "this worker does not own this person's partition")
        try:
            async with asyncio.timeout(ROUTE_TIMEOUT):
                return await self._forward(request, partition)
        except Exception as exc:  # noqa: BLE001 - the group could not be described, or timeout
            log.info("status API: forwarding failed: %r", exc)
            return unavailable(NO_ANSWER)

    # --- the server -------------------------------------------------------------------------

    def web_app(self) -> aioweb.Application:
        app = aioweb.Application(middlewares=[make_guard(self.token)])

        async def person_status(request: Any) -> Any:
            return await self._person(request, history=False)

        async def person_history(request: Any) -> Any:
            return await self._person(request, history=True)

        async def openapi(request: Any) -> Any:
            return json_response(200, self.openapi_body)

        async def page(request: Any) -> Any:
            return page_response()

        async def live(request: Any) -> Any:
            return probe_answer(None)

        async def ready(request: Any) -> Any:
            return probe_answer(readiness(*self.reads.state()))

        app.router.add_get(STATUS_PATH, person_status)
        app.router.add_get(HISTORY_PATH, person_history)
        app.router.add_get(OPENAPI_PATH, openapi)
        app.router.add_get(PAGE_PATH, page)
        app.router.add_get(LIVE_PATH, live)
        app.router.add_get(READY_PATH, ready)
        return app

    async def _serve(self) -> None:
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=ROUTE_TIMEOUT / 2))
        runner = aioweb.AppRunner(self.web_app(), access_log=None)
        await runner.setup()
        await aioweb.TCPSite(runner, self.host, self.port).start()
        log.info("status API on %s (canonical URL %s)", f"{self.host}:{self.port}", self.url)
        self.ready.set()
        await asyncio.Event().wait()  # until the process ends (a daemon thread)

    def start(self) -> None:
        warn_about(self.url, self.token, self.host, self.port)
        failed: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(self._serve())
            except BaseException as exc:  # noqa: BLE001 - reported to start() or logged
                failed.append(exc)
                self.ready.set()
                log.error("status API stopped: %r", exc)

        threading.Thread(target=run, name="mynapoint-status-api", daemon=True).start()
        self.ready.wait(30)
        if failed:
            raise SystemExit(f"mynapoint worker: the status API cannot listen on "
                             f"{self.host}:{self.port} ({failed[0]}); free the port or set "
                             "--web-port (MYNAPOINT_WEB_PORT)")

