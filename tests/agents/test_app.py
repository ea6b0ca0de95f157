"""The Faust app's wiring (agents/app.py), without a broker."""

from __future__ import annotations

import asyncio

from faust.types import TP

from schemas import topics
from streams.pipeline.intake import Intake
from streams.pipeline.ledger import Ledger


def test_a_revocation_reaches_each_step_with_its_own_partitions(tmp_path, monkeypatch):
    from agents.app import create_app
    from agents.settings import WorkerSettings

    heard: list[tuple[str, object]] = []
    monkeypatch.setattr(Intake, "revoked", lambda self, sources: heard.append(("intake", sources)))
    monkeypatch.setattr(Ledger, "revoked", lambda self, parts: heard.append(("ledger", parts)))
    app = create_app(WorkerSettings(data_dir=str(tmp_path)))
    revoked = {TP(topics.CARDS, 1), TP(topics.PAYMENTS, 3), TP(topics.JOURNAL, 1),
               TP(topics.CLAIMS, 2)}
    asyncio.run(app.on_partitions_revoked.send(revoked))
    assert sorted(heard, key=lambda h: h[0]) == [
        ("intake", {(topics.CARDS, 1), (topics.PAYMENTS, 3)}),
        ("ledger", {1}),
    ]
