"""The status API (streams/web/) on the workers' Faust web server.

Each person lives in one partition (tables and topics are keyed by the person_id's UTF-8 bytes,
partitioned by Kafka's murmur2), and only the worker that owns that partition has the person's
current state. Both person views are wrapped in Faust's `@app.table_route(match_info="person_id")`:
a worker that does not own the partition forwards the request (method, path and headers, so also
the bearer token) to the owner's canonical URL and relays the answer. Faust computes the partition
from the table's changelog key serializer, which is `raw` here, so the path's `person_id` becomes
exactly the bytes the producers key records with: the same partition as the topic record.

Faust's built-in `/table` and `/router` endpoints (which would serve raw table values and the
cluster layout, without auth) are switched off; the `claims` table (which holds other people's
ids) is never read. The documents, the guard and the answers are the engine-independent ones of
streams/web/ (tested without a broker in tests/web/); these views on two live workers in
tests/integration/test_status_api.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import ClientError

from agents.faust_private import add_middleware
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
    NO_ANSWER,
    NOT_READY,
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
from streams.web.status_page import PAGE_PATH


def register_views(app: Any, tables: dict[str, Any], rules: RulesConfig, token: str | None) -> None:
    """Adds the status API to `app` (before the worker starts); see the module docstring."""
    from faust.web import View

    token = token or None
    # Built-in endpoints that would serve raw table values and the cluster layout, without auth.
    # `table_route` does not need them: it forwards through `app.router`, not over `/router`.
    app.conf.web_tables_enabled = False
    app.conf.web_router_enabled = False
    warn_about(app.conf.canonical_url, token, app.conf.web_host, app.conf.web_port)

    persons = tables["persons"]
    timeline = tables["timeline"]
    openapi_body = DOC_ENCODER.encode(openapi_document(token is not None))

    add_middleware(app, make_guard(token))

    def busy() -> bool:
        # Faust ends a rebalance (`rebalancing` False) only once its tables have recovered.
        return bool(app.rebalancing or app.in_recovery)

    def not_ready() -> Any | None:
        return unavailable(NOT_READY) if busy() else None

    # Ready once the group gave this worker its partitions (none is an assignment too).
    joined = False

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        nonlocal joined
        joined = True

    def served_by(key: bytes) -> ServedBy:
        tp = app.producer.key_partition(persons.changelog_topic.get_topic_name(), key)
        return ServedBy(partition=tp.partition, worker=str(app.conf.canonical_url))

    async def answer(request: Any, person_id: str, owner: Any) -> Any:
        """Checks, then the owner's answer (here, or forwarded by Faust's table routing)."""
        if not valid_person_id(person_id):
            return error(400, BAD_PERSON_ID)
        busy = not_ready()
        if busy is not None:
            return busy
        try:
            async with asyncio.timeout(ROUTE_TIMEOUT):
                return await owner(request, person_id=person_id)
        except (ClientError, TimeoutError):
            return unavailable(NO_ANSWER)

    @app.page(STATUS_PATH, name="person_status")
    class PersonStatusView(View):
        async def get(self, request: Any, person_id: str) -> Any:
            return await answer(request, person_id, self.owner)

        @app.table_route(table=persons, match_info="person_id")
        async def owner(self, request: Any, person_id: str) -> Any:
            busy = not_ready()
            if busy is not None:
                return busy
            key = person_id.encode()
            return status_answer(person_id, persons.get(key), rules, served_by(key))

    @app.page(HISTORY_PATH, name="person_history")
    class PersonHistoryView(View):
        async def get(self, request: Any, person_id: str) -> Any:
            return await answer(request, person_id, self.owner)

        @app.table_route(table=timeline, match_info="person_id")
        async def owner(self, request: Any, person_id: str) -> Any:
            busy = not_ready()
            if busy is not None:
                return busy
            key = person_id.encode()
            return history_answer(person_id, timeline.get, lambda k: persons.get(k) is not None,
                                  rules, served_by(key))

    @app.page(LIVE_PATH, name="live")
    class LiveView(View):
        async def get(self, request: Any) -> Any:
            return probe_answer(None)

    @app.page(READY_PATH, name="ready")
    class ReadyView(View):
        async def get(self, request: Any) -> Any:
            return probe_answer(readiness(joined, busy()))

    @app.page(OPENAPI_PATH, name="openapi")
    class OpenApiView(View):
        async def get(self, request: Any) -> Any:
            return json_response(200, openapi_body)

    @app.page(PAGE_PATH, name="status_page")
    class StatusPageView(View):
        async def get(self, request: Any) -> Any:
            return page_response()
