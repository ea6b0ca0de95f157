"""What every agent sends: records straight through Faust's producer, outcomes to their topics
(counted), and dead letters for the records no agent can use."""

from __future__ import annotations

import logging
import os
from typing import Any

from agents import metrics
from schemas.codec import INTERNAL_ERROR, OUTCOME_ENCODER, BadInput, dead_letter
from schemas.outcomes import TOPIC_OF_TYPE, Outcome

log = logging.getLogger("mynapoint")

#: The worker's exit code when a record could not be delivered (sysexits' EX_SOFTWARE is 70;
#: this one says "a send failed"): see `Outputs.delivered`.
EXIT_SEND_FAILED = 75


class Outputs:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        # Straight to Faust's producer: `Topic.send` wraps every record in a FutureMessage and a
        # channel hop, about a fifth of the worker's time. Partitioning is the same (the
        # producer's default partitioner on the key), and this producer is still flushed before
        # any offset is committed (by Faust in the at-least-once mode; in the exactly-once mode
        # by `faust_private.flush_before_transactional_commits`).
        sent = await self.app.producer.send(topic, key, value, None, None, None)
        sent.add_done_callback(self.delivered)

    @staticmethod
    def delivered(sent: Any) -> None:
        """A send the producer gave up on (after its own retries) stops the worker at once.

        Nobody else looks at these results, and Faust commits offsets after flushing the producer
        whether or not each send succeeded: a failed send would be lost silently, the offset of
        its input committed past it. Exiting here, before the commit that follows the flush (this
        callback runs as soon as the send fails, ahead of the flush's waiter), leaves the input
        uncommitted: the restarted worker folds it again and re-sends the remembered outcomes.
        """
        if sent.cancelled() or sent.exception() is None:
            return
        log.critical("a record could not be delivered (%r); stopping so that nothing is "
                     "committed past it: restart the worker (it re-sends what was not delivered)",
                     sent.exception())
        logging.shutdown()
        os._exit(EXIT_SEND_FAILED)

    async def publish(self, key: bytes | None, outcomes: list[Outcome]) -> None:
        for o in outcomes:
            await self.send(TOPIC_OF_TYPE[type(o)], key, OUTCOME_ENCODER.encode(o))
            metrics.count_outcome(o)

    async def refuse(self, exc: BadInput, msg: Any, value: bytes | None) -> None:
        """A record no agent can use, published as a dead letter naming it; processing goes on."""
        if exc.reason == INTERNAL_ERROR:
            log.error("%s/%s/%s: %s", msg.topic, msg.partition, msg.offset, exc.message,
                      exc_info=exc)
        dl = dead_letter(exc, f"{msg.topic}/{msg.partition}/{msg.offset}", value,
                         topic=msg.topic, partition=msg.partition, offset=msg.offset)
        # Keyed by the (masked) person id, never by the raw key: it may be a My Number.
        await self.publish(dl.person_id.encode() if dl.person_id else None, [dl])
