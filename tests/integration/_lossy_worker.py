"""A Faust worker whose consumer passes over some journal records once, as Faust itself did after a
rebalance (docs/ARCHITECTURE.md, "Journal records passed over after a rebalance"): the records
never reach the ledger agent, and Faust's fetch loop counts them as a gap it may commit past.

Passed over, once each: the first `ANSWERS` claim answers, and every event of a person whose id
starts with `LOST_PREFIX` (a test sends one alone, last: a record lost at the end of its partition,
with no later record to show the hole).

Usage: python -m tests.integration._lossy_worker [the arguments of `python -m agents.worker`]
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from typing import Any

from faust.transport.consumer import Consumer

from agents.worker import main
from schemas import topics
from schemas.journal import AnswerEntry, EventEntry
from streams.core.versions import journal_entries

ANSWERS = 12
LOST_PREFIX = "LOST"

_getmany = Consumer.getmany
# (partition, offset) of each journal record passed over, and how many were answers.
_passed_over: set[tuple[int, int]] = set()
_answers = [0]


def _pass_over(partition: int, offset: int, key: bytes | None, value: bytes | None) -> bool:
    if value is None or key is None or (partition, offset) in _passed_over:
        return False
    # A batch record is passed over whole when one of its entries is to be.
    entries = [entry for _, entry in journal_entries(key, value)]
    answer = (any(isinstance(entry, AnswerEntry) for entry in entries)
              and _answers[0] < ANSWERS)
    lost = answer or any(isinstance(entry, EventEntry) and LOST_PREFIX.encode() in entry.value
                         for entry in entries)
    if lost:
        _answers[0] += answer
        _passed_over.add((partition, offset))
        print(f"lossy consumer: passing over {topics.JOURNAL}/{partition} offset {offset}",
              flush=True)
    return lost


async def getmany(self: Any, timeout: float) -> AsyncIterator[tuple[Any, Any]]:
    async for tp, message in _getmany(self, timeout=timeout):
        if tp.topic == topics.JOURNAL and _pass_over(tp.partition, message.offset,
                                                     message.key, message.value):
            continue
        yield tp, message


Consumer.getmany = getmany  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main())
