"""The Faust app's wiring (agents/app.py), without a broker."""

from __future__ import annotations

import asyncio

from faust.types import TP

from schemas import topics
from streams.pipeline.intake import Intake
from streams.pipeline.ledger import Ledger
from streams.pipeline.rereads import Rereads


def test_a_revocation_reaches_each_step_with_its_own_partitions(tmp_path, monkeypatch):
    from agents.app import create_app
    from agents.settings import WorkerSettings

    heard: list[tuple[str, object]] = []
    monkeypatch.setattr(Intake, "revoked", lambda self, sources: heard.append(("intake", sources)))
    monkeypatch.setattr(Ledger, "revoked", lambda self, parts: heard.append(("ledger", parts)))
    # The ledger's and the claims' sources (intake's are its own step's).
    monkeypatch.setattr(Rereads, "revoked",
                        lambda self, sources: heard.append(("rereads", sources)))
    app = create_app(WorkerSettings(data_dir=str(tmp_path)))
    revoked = {TP(topics.CARDS, 1), TP(topics.PAYMENTS, 3), TP(topics.JOURNAL, 1),
               TP(topics.CLAIMS, 2)}
    asyncio.run(app.on_partitions_revoked.send(revoked))
    assert sorted(heard, key=str) == [
        ("intake", {(topics.CARDS, 1), (topics.PAYMENTS, 3)}),
        ("ledger", {1}),
        ("rereads", {(topics.CLAIMS, 2)}),
        ("rereads", {(topics.JOURNAL, 1)}),
    ]
