"""An offline run of the rules over events in processing order (simulate, replay, tests)."""

from __future__ import annotations

from schemas.events import Event
from schemas.outcomes import Outcome
from streams.core.claims import Answer, Claims
from streams.core.config import RulesConfig
from streams.core.rules import Claim, Step, apply, complete
from streams.core.state import PersonState


class Engine:
    """Per-person states and cross-person claims, all in memory, answered synchronously."""

    def __init__(self, cfg: RulesConfig):
        self.cfg = cfg
        self.people: dict[str, PersonState] = {}
        self.claims = Claims(cfg.reservation_budget)

    def process(self, ev: Event) -> list[Outcome]:
        person_id = ev.person_id
        state = self.people.get(person_id)
        step = apply(state, ev, self.cfg)
        if step.claim is not None:
            step = self._answer(step, ev)
        new_state = step.state
        if new_state is not state:
            self.people[person_id] = new_state
        return step.outcomes

    def _answer(self, step: Step, ev: Event) -> Step:
        """Answers the step's claim here and now, and finishes the decision."""
        claim = step.claim
        assert claim is not None
        answer = self.answer_claim(claim)
        return complete(step.state, ev, claim, answer.granted, answer.holder, self.cfg)

    def answer_claim(self, claim: Claim) -> Answer:
        """The answer to a cross-person claim: first come first served in processing order.
        What-if runs (`streams.audit.whatif`) override it to order claims and count answers."""
        return self.claims.answer(claim.kind, claim.key, claim.person_id)
