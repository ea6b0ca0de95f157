"""`mynapoint schema` and `mynapoint schema --outcomes`: the JSON Schemas integrators validate
against, generated from the Structs. Checked here against what the code really takes and writes:
every event of a generated history fits the input schema, every line `simulate` writes fits the
outcome schema, and values the contract refuses do not fit."""

from __future__ import annotations

import json

import msgspec
import pytest

from cli.main import main
from devtools.demo import DEMO_CONFIG, generate
from schemas.jsonschema import input_event_schema, outcome_schema
from streams.audit.simulate import run
from streams.core.config import load_config
from tests.schema_shapes import errors

INPUT = input_event_schema()
OUTCOME = outcome_schema()


def fits(value, schema) -> list[str]:
    return errors(value, {"anyOf": schema["anyOf"]}, schema)


@pytest.fixture(scope="module")
def history() -> list[bytes]:
    return list(generate(people=2000, seed=5, bad_ratio=0.02))  # one shared account: an alert


def test_every_event_the_decoder_takes_fits_the_input_schema(history):
    from schemas.codec import DECODE_ERRORS, EVENT_DECODER

    taken = 0
    for line in history[:4000]:
        try:
            EVENT_DECODER.decode(line)
        except DECODE_ERRORS:
            continue
        assert fits(msgspec.json.decode(line), INPUT) == [], line
        taken += 1
    assert taken > 3800


@pytest.mark.parametrize(("change", "said"), [
    ({"amount_yen": 0}, "below the minimum"),
    ({"amount_yen": 10_000_001}, "above the maximum"),
    ({"amount_yen": "100"}, "expected"),
    ({"method": "cash"}, "not in"),
    ({"person_id": "a b"}, "does not match"),
])
def test_a_payment_the_contract_refuses_does_not_fit(change, said):
    payment = {"type": "payment.recorded", "event_id": "e1", "person_id": "P1",
               "occurred_at": "2021-01-02T10:00:00+09:00", "service_id": "demo-pay",
               "service_account": "A1", "transaction_id": "T1", "method": "charge",
               "amount_yen": 1000}
    assert fits(payment, INPUT) == []
    assert any(said in e for e in errors({**payment, **change},
                                         {"$ref": "#/$defs/PaymentRecorded"}, INPUT))


def test_every_outcome_simulate_writes_fits_the_outcome_schema(history):
    kinds = set()
    for batch in run(history, load_config(DEMO_CONFIG)):
        for outcome in batch:
            doc = msgspec.json.decode(msgspec.json.encode(outcome))
            assert fits(doc, OUTCOME) == [], doc
            kinds.add(doc["kind"])
    assert kinds == {"decision", "grant", "alert", "dead_letter"}


def test_an_outcome_missing_what_the_contract_requires_does_not_fit():
    decision = {"kind": "decision", "event_id": "e1", "person_id": "P1", "type": "card.issued",
                "accepted": True, "reason": None, "outcome_id": "x", "rules_version": "r-1"}
    assert fits(decision, OUTCOME) == []
    without_reason = {k: v for k, v in decision.items() if k != "reason"}
    assert fits(without_reason, OUTCOME)  # "reason": null is written out on acceptances
    assert fits({**decision, "kind": "verdict"}, OUTCOME)


def test_the_command_prints_either_schema(capsys):
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == INPUT
    assert main(["schema", "--outcomes"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == OUTCOME and printed["title"] == "mynapoint-stream outcome"
