"""JSON Schema of the input events and of the outcomes, generated from the same Structs that
validate the events and encode the outcomes, so they cannot drift."""

from __future__ import annotations

from typing import Any

import msgspec

from schemas.events import AnyEvent
from schemas.outcomes import AnyOutcome
from schemas.topics import OUTPUT_TOPICS


def input_event_schema() -> dict[str, Any]:
    schema: dict[str, Any] = msgspec.json.schema(AnyEvent)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "mynapoint-stream input event"
    schema["description"] = (
        "One event per Kafka record value (keyed by person_id) or per line of a JSONL file. "
        "Unknown extra fields are ignored. See CONTRACT.md."
    )
    return schema


def outcome_schema() -> dict[str, Any]:
    schema: dict[str, Any] = msgspec.json.schema(AnyOutcome)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "mynapoint-stream outcome"
    schema["description"] = (
        f"One outcome per Kafka record value of {', '.join(OUTPUT_TOPICS)} (keyed by "
        "person_id), or per line of `mynapoint simulate`'s output; tagged on `kind`. Consumers "
        "should ignore fields they do not know: optional ones may be added. See CONTRACT.md."
    )
    return schema
