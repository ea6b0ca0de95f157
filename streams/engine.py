"""An offline run of the rules over events in processing order (simulate, replay, tests)."""

from __future__ import annotations

from schemas.events import Event
from schemas.outcomes import Outcome
from streams.claims import Claims
from streams.config import RulesConfig
from streams.rules import CLAIM_ACCOUNT, apply, complete
from streams.state import PersonState


class Engine:
    """Per-person states and cross-person claims, all in memory, answered synchronously."""

    def __init__(self, cfg: RulesConfig):
        self.cfg = cfg
        self.people: dict[str, PersonState] = {}
        self.claims = Claims(cfg.reservation_budget)

    def process(self, ev: Event) -> list[Outcome]:
        people = self.people
        state = people.get(ev.person_id)
        step = apply(state, ev, self.cfg)
        claim = step.claim
        if claim is not None:
            if claim.kind == CLAIM_ACCOUNT:
                answer = self.claims.account(claim.key, claim.person_id)
            else:
                answer = self.claims.reservation(claim.person_id)
            step = complete(step.state, ev, claim, answer.granted, answer.holder, self.cfg)
        if step.state is not state:
            people[ev.person_id] = step.state
        return step.outcomes
