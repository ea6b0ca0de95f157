"""`mynapoint reask`: the requests that wait for a claim's answer, and asking their claims again.

A request that needs a cross-person claim (who holds a payment account, a place in the
reservation budget) waits in the person's record until the claims step's answer comes back
through the journal; the person's later entries queue behind it. The ledger sends the claim
again whenever one of the person's journal entries is delivered again, which covers a claim lost
in a crash. A person with no later entry, whose claim was lost some other way, would wait for
ever: this command finds such requests and asks again.

It reads the persons changelog (either engine's) to its end, keeping only the people whose
latest record waits, lists them, and with `send` produces their claim requests again to the
claims topic, keyed by the claim key like the ledger's (Kafka's default partitioner). Safe while
the workers run: a claim asked again gets the same answer (streams/core/claims.py), and an answer
for a request that no longer waits is taken as a repeat (streams/core/ledger.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

from clients.history import (
    HistoryError,
    person_of_row,
    persons_changelog_in,
    persons_changelogs,
    read_topics,
)
from schemas import topics
from schemas.codec import DECODE_ERRORS
from schemas.journal import JOURNAL_ENCODER, ClaimRequest
from streams.core.ledger import LedgerRecord, waiting_request
from streams.core.versions import VersionError, decode_ledger_record


class ReaskFailed(RuntimeError):
    """What stopped the command, with what to do."""


async def waiting_requests(bootstrap: str, app_id: str, *, timeout: float = 600.0,
                           **client_kwargs: Any) -> list[ClaimRequest]:
    """The claim request of every person's waiting request, by person id.

    The persons changelog is read as it streams by: what is kept is the people whose latest
    record waits, so memory follows their number, not the number of people."""
    changelogs = list(persons_changelogs(app_id))
    try:
        found = await read_topics(bootstrap, [], optional=changelogs,
                                  only=dict.fromkeys(changelogs, ()), timeout=timeout,
                                  **client_kwargs)
        changelog = persons_changelog_in(found, app_id)
        if changelog is None:
            raise ReaskFailed(
                f"no persons changelog of app {app_id!r} on {bootstrap}: pass the workers' "
                "--app-id (a deployment that never decided an event has none)")
        scan = _Scan(changelog)
        await read_topics(bootstrap, [changelog], on_records=scan.take, timeout=timeout,
                          **client_kwargs)
    except HistoryError as exc:
        raise ReaskFailed(str(exc)) from None
    if scan.unreadable:
        raise ReaskFailed(
            f"{scan.unreadable:,} stored records cannot be read ({scan.first_error}); run the "
            "version of mynapoint that wrote them")
    return [waiting_request(person.decode("utf-8", "replace"), record)
            for person, record in sorted(scan.waiting.items())]


class _Scan:
    """The people whose latest record in a persons changelog waits for a claim's answer."""

    def __init__(self, changelog: str) -> None:
        self.changelog = changelog
        self.waiting: dict[bytes, LedgerRecord] = {}
        self.unreadable = 0
        self.first_error = ""

    def take(self, records: list[Any]) -> None:
        for r in records:
            person = person_of_row(self.changelog, r.key)
            if person is None:
                continue
            record = None
            if r.value is not None:
                try:
                    record = decode_ledger_record(r.value)
                except (VersionError, *DECODE_ERRORS) as exc:
                    self.unreadable += 1
                    self.first_error = self.first_error or (
                        f"{self.changelog}/{r.partition}/{r.offset}: {exc}")
            if record is not None and record.waiting is not None:
                self.waiting[person] = record
            else:
                self.waiting.pop(person, None)


async def send_requests(bootstrap: str, requests: list[ClaimRequest], *, timeout: float = 120.0,
                        **client_kwargs: Any) -> int:
    """Sends the claim requests to the claims topic; returns how many the broker acknowledged
    (all of them, or ReaskFailed)."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    from clients.connect import quiet_connect_errors

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                request_timeout_ms=int(timeout * 1000), **client_kwargs)
    try:
        with quiet_connect_errors():
            await asyncio.wait_for(producer.start(), timeout)
        sent = [await producer.send(topics.CLAIMS, JOURNAL_ENCODER.encode(r),
                                    key=r.key.encode("utf-8"))
                for r in requests]
        await asyncio.wait_for(asyncio.gather(*sent), timeout)
    except (TimeoutError, KafkaError, OSError) as exc:
        raise ReaskFailed(
            f"cannot send the claim requests to {topics.CLAIMS} on {bootstrap} "
            f"({str(exc) or type(exc).__name__}); nothing is lost by running the command again"
        ) from None
    finally:
        try:
            await asyncio.wait_for(producer.stop(), 10)
        except Exception:  # noqa: BLE001 - nothing more to do on the way out
            pass
    return len(sent)
