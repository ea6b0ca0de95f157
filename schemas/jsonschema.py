"""JSON Schema of the input events, generated from the same Structs that validate them."""

from __future__ import annotations

from typing import Any

import msgspec

from schemas.events import AnyEvent


def input_event_schema() -> dict[str, Any]:
    schema: dict[str, Any] = msgspec.json.schema(AnyEvent)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "mynapoint-stream input event"
    schema["description"] = (
        "One event per Kafka record value (keyed by person_id) or per line of a JSONL file. "
        "Unknown extra fields are ignored. See CONTRACT.md."
    )
    return schema
