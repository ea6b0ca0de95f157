"""The claims agent: runs the claims step (streams/pipeline/claims.py) over the claims topic,
with the `claims` table."""

from __future__ import annotations

from typing import Any

from agents.tables import Changelogs
from streams.core.config import RulesConfig
from streams.pipeline.claims import Claims
from streams.pipeline.outputs import Outputs


def register(app: Any, claims: Any, holders: Any, out: Outputs, rules: RulesConfig) -> None:
    """Adds the claims agent to `app`."""
    changelogs = Changelogs(app)
    on_claim = Claims(rules, changelogs.store(holders), out).on_claim

    @app.agent(claims, name="claims")
    async def claims_agent(stream: Any) -> None:
        async for event in stream.events():
            try:
                await on_claim(event.value, event.message)
            finally:
                await changelogs.send()  # the table's changelog records, before the ack
