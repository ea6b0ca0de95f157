"""The cross-person rules: who holds a payment account, and the national reservation budget.

Both are first-come-first-served in processing order and never released, so an answer depends
only on the order claims arrive in, and asking again with the same claim gives the same answer
(a redelivered claim cannot take a second place in the budget). `simulate` keeps them in memory
in one `Claims`; the live pipeline keeps the same values in tables keyed by account, and by one
budget key, and calls the same functions.
"""

from __future__ import annotations

from typing import NamedTuple

from streams.core.rules import BUDGET_KEY

# The live `claims` table's keys (streams/pipeline/claims.py): a payment account's key -> its holder's
# person_id; one row per person holding a reservation; the count of reservations granted. All
# rows are written while answering a claim, so they live on the partition of the claim's key:
# the account's, or BUDGET_KEY's for the reservation rows (`claim_of_row`).
RESERVED_PREFIX = b"reserved\x00"
BUDGET_COUNT_KEY = b"count\x00" + BUDGET_KEY.encode()


def claim_of_row(row_key: bytes) -> bytes:
    """The claim key (the claims topic's record key) whose partition holds a `claims` table row."""
    if row_key == BUDGET_COUNT_KEY or row_key.startswith(RESERVED_PREFIX):
        return BUDGET_KEY.encode()
    return row_key


class Answer(NamedTuple):
    granted: bool
    holder: str | None  # for accounts: who holds it after this claim


def claim_account(holder: str | None, person_id: str) -> Answer:
    """An account goes to the first person who links it; that person may link it again."""
    if holder is None or holder == person_id:
        return Answer(True, person_id)
    return Answer(False, holder)


def claim_reservation(
    already_granted: bool, reserved_count: int, budget: int | None
) -> tuple[Answer, int]:
    """One place in the budget per person; returns the answer and the new count."""
    if already_granted:
        return Answer(True, None), reserved_count
    if budget is not None and reserved_count >= budget:
        return Answer(False, None), reserved_count
    return Answer(True, None), reserved_count + 1


class Claims:
    """In-memory cross-person state for one offline run (simulate, replay)."""

    __slots__ = ("account_holders", "reserved", "budget")

    def __init__(self, budget: int | None):
        self.account_holders: dict[str, str] = {}
        self.reserved: set[str] = set()
        self.budget = budget

    def account(self, key: str, person_id: str) -> Answer:
        answer = claim_account(self.account_holders.get(key), person_id)
        if answer.granted:
            self.account_holders[key] = person_id
        return answer

    def reservation(self, person_id: str) -> Answer:
        answer, _ = claim_reservation(person_id in self.reserved, len(self.reserved), self.budget)
        if answer.granted:
            self.reserved.add(person_id)
        return answer

    def answer(self, kind: str, key: str, person_id: str) -> Answer:
        """A claim of either kind ("account" with its account key, or "reservation")."""
        if kind == "account":
            return self.account(key, person_id)
        return self.reservation(person_id)
