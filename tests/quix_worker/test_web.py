"""The Quix worker's status API (quix_worker/web.py) without a broker: two servers on loopback,
each owning half of the partitions through a fake of the state reads, find each other's people
through the group's member list and relay the owner's answer."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import msgspec
from aiohttp.test_utils import TestServer

from quix_worker import private
from quix_worker.web import StatusServer
from schemas import topics
from streams.core.config import build_config
from streams.core.ledger import RECORD_ENCODER, LedgerRecord
from streams.web.http import FORWARDED_HEADER

CFG = build_config({"services": [{"id": "demo-pay", "name": "Demo Pay"}]})
TOKEN = "tok-0123"
PARTITIONS = 4
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def person_on(partition: int, skip: int = 0) -> str:
    found = [f"P{i:05d}" for i in range(1000)
             if topics.partition_for_key(f"P{i:05d}".encode(), PARTITIONS) == partition]
    return found[skip]


class FakeReads:
    """`private.StateReads` over dicts: the partitions held, by number, as RocksDB keys."""

    def __init__(self, held: dict[int, dict[bytes, bytes]]) -> None:
        self.held = held
        self.recovering: set[int] = set()
        self.joined = True

    def state(self) -> tuple[bool, bool]:
        return self.joined, bool(self.recovering)

    def read(self, partition: int, fn: Any) -> Any:
        if partition in self.recovering:
            return private.RECOVERING
        if partition not in self.held:
            return private.NOT_OWNED
        return fn(self.held[partition].get)


def known(*people: str) -> dict[int, dict[bytes, bytes]]:
    held: dict[int, dict[bytes, bytes]] = {}
    for p in people:
        key = p.encode()
        held.setdefault(topics.partition_for_key(key, PARTITIONS), {})[
            topics.quix_state_key(key, topics.QUIX_PERSONS_TAG, key)] = RECORD_ENCODER.encode(
            LedgerRecord())
    return held


def run(scenario: Any) -> Any:
    """Two workers: A holds partitions 0 and 1, B 2 and 3; `scenario(a, b, get)` runs against
    them, `get(server, path, headers)` -> (status, JSON body, headers)."""

    async def main() -> Any:
        reads = {"a": FakeReads({0: {}, 1: {}}), "b": FakeReads({2: {}, 3: {}})}
        people = [person_on(0), person_on(2), person_on(3)]
        for p, held in known(*people).items():
            reads["a" if p < 2 else "b"].held[p].update(held)
        servers: dict[str, StatusServer] = {}
        tests: dict[str, TestServer] = {}
        for name in ("a", "b"):
            server = StatusServer(reads[name], CFG, host="127.0.0.1", port=0, canonical_url="",
                                  token=TOKEN, partitions=PARTITIONS, bootstrap="unused:9092",
                                  group="g")
            servers[name] = server
            tests[name] = TestServer(server.web_app())
            await tests[name].start_server()
            server.url = str(tests[name].make_url("")).rstrip("/")
        urls = [s.url for s in servers.values()]
        for server in servers.values():
            server.session = aiohttp.ClientSession()

            async def peers(fresh: bool = False) -> list[str]:
                return urls

            server.peers.get = peers  # type: ignore[method-assign]
        async with aiohttp.ClientSession() as client:
            async def get(server: StatusServer, path: str,
                          headers: dict[str, str] | None = None) -> Any:
                async with client.get(server.url + path, headers=headers) as resp:
                    return resp.status, msgspec.json.decode(await resp.read()), resp.headers

            try:
                return await scenario(servers["a"], servers["b"], reads, get, tests)
            finally:
                for name in ("a", "b"):
                    await servers[name].session.close()  # type: ignore[union-attr]
                    await tests[name].close()

    return asyncio.run(main())


def test_each_worker_answers_for_every_partition_with_the_owners_answer():
    async def scenario(a, b, reads, get, tests):
        for partition, owner in ((0, a), (2, b), (3, b)):
            person = person_on(partition)
            for asked in (a, b):
                status, doc, _ = await get(asked, f"/persons/{person}", AUTH)
                assert status == 200, doc
                assert doc["served_by"] == {"partition": partition, "worker": owner.url}
                status, doc, _ = await get(asked, f"/persons/{person}/history", AUTH)
                assert status == 200 and doc["outcomes"] == [], doc
        # An unknown person on the other worker's partition: the owner's 404, relayed.
        status, doc, _ = await get(a, f"/persons/{person_on(2, skip=1)}", AUTH)
        assert status == 404 and doc == {"error": "no such person"}
        # The forwarded request carried the token: without it, the owner would have said 401.
        status, _, _ = await get(a, f"/persons/{person_on(2)}")
        assert status == 401

    run(scenario)


def test_a_forwarded_request_is_answered_from_local_state_only():
    async def scenario(a, b, reads, get, tests):
        status, doc, _ = await get(b, f"/persons/{person_on(0)}", {**AUTH, FORWARDED_HEADER: "1"})
        assert status == 421 and set(doc) == {"error"}
        status, doc, _ = await get(b, f"/persons/{person_on(2)}", {**AUTH, FORWARDED_HEADER: "1"})
        assert status == 200

    run(scenario)


def test_a_recovering_or_silent_owner_gives_503_with_retry_after():
    async def scenario(a, b, reads, get, tests):
        person = person_on(2)
        reads["b"].recovering.add(2)
        for asked in (a, b):
            status, doc, headers = await get(asked, f"/persons/{person}", AUTH)
            assert status == 503 and headers["Retry-After"], doc
        reads["b"].recovering.clear()
        # Once B is gone, nobody answers for partition 2.
        await tests["b"].close()
        status, doc, headers = await get(a, f"/persons/{person}", AUTH)
        assert status == 503 and "retry" in doc["error"] and headers["Retry-After"]
        # A still answers for its own people.
        assert (await get(a, f"/persons/{person_on(0)}", AUTH))[0] == 200

    run(scenario)


def test_bad_ids_are_refused_before_anything_is_read_or_forwarded():
    async def scenario(a, b, reads, get, tests):
        reads["a"].held.clear()  # a read would now say "not owned" and forward
        for bad in ("123456789012", "bad.id", "x" * 65):
            status, doc, _ = await get(a, f"/persons/{bad}", AUTH)
            assert status == 400 and bad not in doc["error"]

    run(scenario)


def test_ready_once_in_the_group_and_while_nothing_is_recovered():
    async def scenario(a, b, reads, get, tests):
        out = []
        reads["a"].joined = False
        out.append(await get(a, "/readyz"))  # no token: probes carry no secret
        reads["a"].joined = True
        reads["a"].recovering.add(1)
        out.append(await get(a, "/readyz"))
        reads["a"].recovering.clear()
        out.append(await get(a, "/readyz"))
        out.append(await get(a, "/livez"))
        return out

    (joining, body1, h1), (recovering, body2, h2), ready, live = run(scenario)
    assert joining == recovering == 503 and h1["Retry-After"] and h2["Retry-After"]
    assert "not joined its consumer group" in body1["error"]
    assert "recovering" in body2["error"]
    assert ready[:2] == live[:2] == (200, {"status": "ok"})
