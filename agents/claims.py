"""The claims agent: runs the claims step (streams/pipeline/claims.py) over the claims topic,
with the `claims` table."""

from __future__ import annotations

from typing import Any

from agents.source import admitted, rereads
from agents.tables import Changelogs
from schemas import topics
from streams.core.config import RulesConfig
from streams.pipeline.claims import Claims
from streams.pipeline.outputs import Outputs
from streams.pipeline.rereads import Rereads


def register(app: Any, claims: Any, holders: Any, out: Outputs, rules: RulesConfig) -> Rereads:
    """Adds the claims agent to `app`; returns its sources' `Rereads` (for `revoked`)."""
    changelogs = Changelogs(app)
    on_claim = Claims(rules, changelogs.store(holders), out).on_claim
    # Claim requests Faust passed over are read again (first come, first served per key).
    watch = rereads(app, "claims_reseek", [topics.CLAIMS])

    @app.agent(claims, name="claims")
    async def claims_agent(stream: Any) -> None:
        async for event in admitted(stream, watch):
            try:
                await on_claim(event.value, event.message)
            finally:
                await changelogs.send()  # the table's changelog records, before the ack

    return watch
