"""What every step sends: outcomes to their topics (counted), and dead letters for the records no
step can use; all through the engine's `Send`."""

from __future__ import annotations

import logging

from schemas.codec import INTERNAL_ERROR, OUTCOME_ENCODER, BadInput, dead_letter
from schemas.outcomes import TOPIC_OF_TYPE, Outcome
from streams.pipeline import metrics
from streams.pipeline.runtime import Send, Where

log = logging.getLogger("mynapoint")


class Outputs:
    __slots__ = ("send",)

    def __init__(self, send: Send) -> None:
        #: The engine's send, for records that are not outcomes (journal entries, claims).
        self.send = send

    async def publish(self, key: bytes | None, outcomes: list[Outcome]) -> None:
        send = self.send
        for o in outcomes:
            await send(TOPIC_OF_TYPE[type(o)], key, OUTCOME_ENCODER.encode(o))
            metrics.count_outcome(o)

    async def refuse(self, exc: BadInput, where: Where, value: bytes | None) -> None:
        """A record no step can use, published as a dead letter naming it; processing goes on."""
        if exc.reason == INTERNAL_ERROR:
            log.error("%s/%s/%s: %s", where.topic, where.partition, where.offset, exc.message,
                      exc_info=exc)
        dl = dead_letter(exc, f"{where.topic}/{where.partition}/{where.offset}", value,
                         topic=where.topic, partition=where.partition, offset=where.offset)
        # Keyed by the (masked) person id, never by the raw key: it may be a My Number.
        await self.publish(dl.person_id.encode() if dl.person_id else None, [dl])
