"""The claims agent: answers cross-person claims first come, first served per key (payment
accounts; the reservation budget) over the `claims` table, back through the journal."""

from __future__ import annotations

from typing import Any

from agents import metrics
from agents.outputs import Outputs
from agents.tables import getter
from schemas import topics
from schemas.codec import DECODE_ERRORS, UNREADABLE_CLAIM, BadInput
from schemas.journal import CLAIM_DECODER, JOURNAL_ENCODER, AnswerEntry, ClaimRequest
from streams.core.claims import (
    BUDGET_COUNT_KEY,
    RESERVED_PREFIX,
    claim_account,
    claim_reservation,
)
from streams.core.config import RulesConfig


def register(app: Any, claims: Any, holders: Any, out: Outputs, rules: RulesConfig) -> None:
    """Adds the claims agent to `app`."""
    read = getter(holders)

    @app.agent(claims, name="claims")
    async def claims_agent(stream: Any) -> None:
        async for event in stream.events():
            try:
                req: ClaimRequest = CLAIM_DECODER.decode(event.value)
            except DECODE_ERRORS as exc:
                await out.refuse(BadInput(UNREADABLE_CLAIM,
                                          f"not a claim request this worker can read ({exc}); only "
                                          f"mynapoint workers may write to {topics.CLAIMS}"),
                                 event.message, event.value)
                continue
            key = req.key.encode()
            if req.kind == "account":
                current = read(key)
                holder = current.decode() if current is not None else None
                ans = claim_account(holder, req.person_id)
                if ans.granted and current is None:
                    holders[key] = req.person_id.encode()
            else:
                person_key = RESERVED_PREFIX + req.person_id.encode()
                already = read(person_key) is not None
                count = int(read(BUDGET_COUNT_KEY) or b"0")
                ans, new_count = claim_reservation(already, count, rules.reservation_budget)
                if ans.granted and not already:
                    holders[person_key] = b"1"
                    holders[BUDGET_COUNT_KEY] = str(new_count).encode()
            reply = AnswerEntry(claim_kind=req.kind, claim_key=req.key, person_id=req.person_id,
                                event_id=req.event_id, granted=ans.granted, holder=ans.holder)
            metrics.labelled(metrics.CLAIMS, req.kind,
                             "granted" if ans.granted else "refused").inc()
            await out.send(topics.JOURNAL, req.person_id.encode(), JOURNAL_ENCODER.encode(reply))
