"""The Quix worker's status API finds the group's workers (`quix_worker.web._Peers`) even when its
first description of the group goes to a broker that died but is still in the cluster's
metadata: asked again, of another broker (`clients.admin.any_broker`)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from aiokafka.errors import NodeNotReadyError

from quix_worker.web import _Peers
from streams.web.peers import client_id

URL = "http://w1:6066"


class Admin:
    def __init__(self, dead_first: int) -> None:
        self.dead_first = dead_first
        self.asked = 0

    async def describe_consumer_groups(self, groups):
        self.asked += 1
        if self.asked <= self.dead_first:
            raise NodeNotReadyError("node 2")
        # (error, group, state, protocol type, protocol, members: (member_id, client_id, ...))
        member = ("member-1", client_id(URL), "/127.0.0.1", b"", b"")
        return [SimpleNamespace(groups=[(0, groups[0], "Stable", "consumer", "range", [member])])]


def test_the_workers_are_found_past_a_dead_broker():
    peers = _Peers("b:1", "app", {})
    peers.admin = Admin(dead_first=2)
    assert asyncio.run(peers.get()) == [URL]
    assert peers.admin.asked == 3
