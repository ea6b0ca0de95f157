"""How the Faust worker sends: records straight through Faust's producer, each send watched."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from streams.pipeline.outputs import Outputs
from streams.pipeline.runtime import Send

log = logging.getLogger("mynapoint")

#: The worker's exit code when a record could not be delivered (sysexits' EX_SOFTWARE is 70;
#: this one says "a send failed"): see `delivered`.
EXIT_SEND_FAILED = 75


def producer_send(app: Any, partition: Callable[[str, bytes | None], int | None]) -> Send:
    """The engine's `Send` for the pipeline's steps; `partition` gives a record's partition, or
    None for the producer's (`streams.pipeline.runtime.pinned_partitions`).

    Straight to Faust's producer: `Topic.send` wraps every record in a FutureMessage and a channel
    hop, about a fifth of the worker's time. Partitioning is the same (the producer's default
    partitioner on the key, Kafka's), and this producer is still flushed before any offset is committed
    (by Faust in the at-least-once mode; in the exactly-once mode by
    `faust_private.flush_before_transactional_commits`).
    """

    async def send(topic: str, key: bytes | None, value: bytes) -> None:
        sent = await app.producer.send(topic, key, value, partition(topic, key), None, None)
        sent.add_done_callback(delivered)

    return send


def outputs(app: Any, partition: Callable[[str, bytes | None], int | None]) -> Outputs:
    """The steps' outputs, sent through the app's producer (`partition`: as `producer_send`)."""
    return Outputs(producer_send(app, partition))


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
