"""`mynapoint reask` on a live deployment: a request whose claim was lost waits until the command
asks again, and is then decided; with nothing waiting, the command lists nothing.

The lost claim is made by hand: with the worker stopped, the persons changelog gets the record a
ledger leaves after it asked for a place in the reservation budget (`streams.core.ledger.fold`
of a card and a MyKey reservation, under the demo configuration, which has a budget), and no
claim request is sent. The restarted worker recovers that record and has nothing to answer.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from clients.connect import run_blocking
from clients.history import persons_changelogs
from clients.offline import state_headers
from devtools.demo import generate
from schemas import topics
from schemas.journal import EventEntry
from streams.audit.takeover import quix_key
from streams.core.config import load_config
from streams.core.ledger import RECORD_ENCODER, fold
from tests.builders import reserve
from tests.integration.conftest import consume_sync
from tests.integration.test_pipeline import DEMO_CONFIG, Outcomes, _produce
from tests.integration.workers import WorkerProcess, card_on_2020_08_01, partition_of, wait_for

ROOT = Path(__file__).resolve().parents[2]
APP_ID = "mynapoint-reask-it"
PERSON = "reask-person-1"
RESERVATION = f"{PERSON}-r"

pytestmark = pytest.mark.engines("tansu")


def reask(bootstrap: str, *flags: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "reask", "--bootstrap", bootstrap, "--app-id", APP_ID,
         "--timeout", "60", *flags],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


def waiting_record() -> bytes:
    """PERSON's record once the ledger decided their card and asked for a place in the budget for
    their MyKey reservation."""
    cfg = load_config(DEMO_CONFIG)
    record = None
    events = [(topics.CARDS, card_on_2020_08_01(PERSON)),
              (topics.RESERVATIONS, msgspec.json.encode(
                  reserve(PERSON, "2020-09-01T10:00:00+09:00", event_id=RESERVATION)))]
    for topic, line in events:
        folded = fold(record, EventEntry(topic=topic, partition=partition_of(PERSON), offset=0,
                                         value=line), cfg)
        record = folded.record
    assert record is not None and record.waiting is not None and folded.claims
    return RECORD_ENCODER.encode(record)


def lose_a_claim(bootstrap: str, engine: str) -> None:
    """Writes PERSON's waiting record to the persons changelog, where a worker recovers it."""
    from aiokafka import AIOKafkaProducer

    faust, quix = persons_changelogs(APP_ID)
    if engine == "quix":
        topic, key = quix, quix_key("persons", PERSON.encode())
    else:
        topic, key = faust, PERSON.encode()

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(topic, waiting_record(), key=key,
                                         partition=partition_of(PERSON),
                                         headers=state_headers(topic))
        finally:
            await producer.stop()

    run_blocking(send())


def decision_of(bootstrap: str, event_id: str, timeout: float) -> dict[str, object]:
    def found(records: list[object]) -> bool:
        return any(msgspec.json.decode(r.value)["event_id"] == event_id  # type: ignore[attr-defined]
                   for r in records)

    records = consume_sync(bootstrap, [topics.DECISIONS], until=found, timeout=timeout)
    return next(d for d in (msgspec.json.decode(r.value) for r in records)
                if d["event_id"] == event_id)


def test_a_request_whose_claim_was_lost_is_decided_once_asked_again(fresh_broker, tmp_path,
                                                                     worker_engine):
    bootstrap = fresh_broker.bootstrap
    logs = tmp_path / "logs"
    logs.mkdir()
    worker = WorkerProcess(fresh_broker, tmp_path / "data", logs, config=DEMO_CONFIG,
                           app_id=APP_ID, engine=worker_engine).start()
    try:
        sent = _produce(bootstrap, list(generate(people=40, seed=3, bad_ratio=0.0)))
        Outcomes(bootstrap).until_decisions(sent, 300, worker)
        # Every claim of the history was answered: nothing waits.
        wait_for(lambda: reask(bootstrap).stdout == "", 120, "no request waiting", poll=1)

        worker.stop()
        lose_a_claim(bootstrap, worker_engine)
        listed = reask(bootstrap)
        assert listed.stdout.splitlines() == [
            f"{PERSON}\t{RESERVATION}\treservation\treservation-budget"]
        assert "1 requests wait for a claim's answer; --send asks again" in listed.stderr

        worker.start()
        asked = reask(bootstrap, "--send")
        assert "asked again for 1 waiting requests" in asked.stderr
        decision = decision_of(bootstrap, RESERVATION, 300)
        assert decision["accepted"] is True and decision["person_id"] == PERSON
        # The answer was folded: the person's record no longer waits.
        wait_for(lambda: reask(bootstrap).stdout == "", 120, "the request decided", poll=1,
                 worker=worker)
    finally:
        worker.stop()
