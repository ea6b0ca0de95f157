"""The claims step: answers cross-person claims first come, first served per key (payment
accounts; the reservation budget) over the `claims` table, back through the journal."""

from __future__ import annotations

import msgspec

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
from streams.pipeline import metrics
from streams.pipeline.outputs import Outputs
from streams.pipeline.runtime import Store, Where


class Claims:
    """Handles the claims topic: one call per claim request, in the partition's order."""

    __slots__ = ("rules", "holders", "out")

    def __init__(self, rules: RulesConfig, holders: Store, out: Outputs) -> None:
        self.rules = rules
        #: Who holds each claimed key, and the reservation budget's count.
        self.holders = holders
        self.out = out

    async def on_claim(self, value: bytes | None, where: Where) -> None:
        out = self.out
        try:
            if value is None:
                raise msgspec.DecodeError("the record has no value")
            req: ClaimRequest = CLAIM_DECODER.decode(value)
        except DECODE_ERRORS as exc:
            await out.refuse(BadInput(UNREADABLE_CLAIM,
                                      f"not a claim request this worker can read ({exc}); only "
                                      f"mynapoint workers may write to {topics.CLAIMS}"),
                             where, value)
            return
        read, write = self.holders.read, self.holders.write
        key = req.key.encode()
        if req.kind == "account":
            current = read(key)
            holder = current.decode() if current is not None else None
            ans = claim_account(holder, req.person_id)
            if ans.granted and current is None:
                write(key, req.person_id.encode())
        else:
            person_key = RESERVED_PREFIX + req.person_id.encode()
            already = read(person_key) is not None
            count = int(read(BUDGET_COUNT_KEY) or b"0")
            ans, new_count = claim_reservation(already, count, self.rules.reservation_budget)
            if ans.granted and not already:
                write(person_key, b"1")
                write(BUDGET_COUNT_KEY, str(new_count).encode())
        await self.holders.changelog()
        reply = AnswerEntry(claim_kind=req.kind, claim_key=req.key, person_id=req.person_id,
                            event_id=req.event_id, granted=ans.granted, holder=ans.holder)
        metrics.labelled(metrics.CLAIMS, req.kind, "granted" if ans.granted else "refused").inc()
        await out.send(topics.JOURNAL, req.person_id.encode(), JOURNAL_ENCODER.encode(reply))
