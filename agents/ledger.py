"""The ledger agent: runs the ledger step (streams/pipeline/ledger.py) over the journal, with the
`persons` and `timeline` tables."""

from __future__ import annotations

from typing import Any

from agents.faust_private import committed_offset
from agents.source import admitted, rereads
from agents.tables import Changelogs
from schemas import topics
from streams.core.config import RulesConfig
from streams.pipeline import metrics
from streams.pipeline.ledger import Ledger
from streams.pipeline.outputs import Outputs
from streams.pipeline.rereads import Rereads


def register(app: Any, journal: Any, persons: Any, timeline: Any, out: Outputs,
             rules: RulesConfig) -> tuple[Ledger, Rereads]:
    """Adds the ledger agent to `app`; returns its step and its sources' `Rereads` (for
    `revoked`)."""
    changelogs = Changelogs(app)
    step = Ledger(rules, changelogs.store(persons), changelogs.store(timeline), out)
    on_entry = step.on_entry
    metrics.watch_claim_waits(step.waits)
    # Journal records Faust passed over are read again (a person's entries fold in order).
    watch = rereads(app, "ledger_reseek", [topics.JOURNAL])

    @app.agent(journal, name="ledger")
    async def ledger(stream: Any) -> None:
        async for event in admitted(stream, watch):
            msg = event.message
            # Everything below the committed offset was sent (the producer is flushed before
            # commits, in both modes).
            try:
                await on_entry(event.key, event.value, msg, committed_offset(app, msg.tp) or 0,
                               getattr(msg, "timestamp", None))
            finally:
                await changelogs.send()  # the tables' changelog records, before the ack

    return step, watch
