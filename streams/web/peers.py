"""Finding the worker that owns a person's partition without an engine's table routing (the Quix
Streams worker; Faust workers route through their own assignor's metadata).

Each worker's consumer carries its status API's canonical URL in its Kafka client id
(`client_id(url)`). The consumer group's description lists its members, and every broker names
them by that client id: Apache Kafka in the member's `client_id`, and in the member id, which is
the client id plus a UUID (Tansu reports only the member id). So `urls_of(members)` gives every
worker's URL. A worker that does not own a partition asks the others, the last owner it learned
first (`Owners`); each answers from its own state or says 421 (it does not own it either), and
never forwards a forwarded request again, so there are no loops.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

CLIENT_ID_PREFIX = "mynapoint-web-"
_CLIENT_ID = re.compile(re.escape(CLIENT_ID_PREFIX) + r"([0-9a-f]+)")


def client_id(canonical_url: str) -> str:
    """The Kafka client id that carries `canonical_url` (hex: any broker accepts the characters,
    and the member id's UUID that follows cannot run into it)."""
    return CLIENT_ID_PREFIX + canonical_url.encode("utf-8").hex()


def url_of(name: str) -> str | None:
    """The canonical URL a client id or member id carries, or None."""
    m = _CLIENT_ID.match(name)
    if m is None or len(m.group(1)) % 2:
        return None
    try:
        return bytes.fromhex(m.group(1)).decode("utf-8")
    except ValueError:
        return None


def urls_of(members: Iterable[tuple[str, str]]) -> list[str]:
    """The canonical URLs of a group's members, given as (member_id, client_id), sorted, once."""
    urls = set()
    for member_id, cid in members:
        url = url_of(cid or "") or url_of(member_id or "")
        if url is not None:
            urls.add(url)
    return sorted(urls)


class Owners:
    """The owner each partition last had, as learned from answers."""

    def __init__(self) -> None:
        self._owner: dict[int, str] = {}

    def candidates(self, partition: int, peers: Iterable[str], me: str) -> list[str]:
        """Whom to ask, in order: the last known owner, then every other peer but `me`."""
        others = [p for p in peers if p != me]
        last = self._owner.get(partition)
        return sorted(others, key=lambda p: p != last)  # stable: the rest keep their order

    def answered(self, partition: int, url: str) -> None:
        self._owner[partition] = url

    def misdirected(self, partition: int, url: str) -> None:
        if self._owner.get(partition) == url:
            del self._owner[partition]
