"""quix_worker/private.py's rebalance hooks, on a stand-in for Quix's `Application`: intake hears
of a rebalance after Quix handled it, and the status API's reads never run during one."""

from __future__ import annotations

from typing import Any

from quix_worker import private


class FakeApp:
    """Quix's three rebalance callbacks, recording their calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[int]]] = []
        self.reads: private.StateReads | None = None

    def _record(self, name: str, partitions: list[int]) -> None:
        assert self.reads is not None
        # The status API's lock is held while Quix opens or closes state partitions.
        assert self.reads._lock.locked()  # noqa: SLF001
        self.calls.append((name, partitions))

    def _on_assign(self, consumer: Any, partitions: list[int]) -> None:
        self._record("quix assign", partitions)

    def _on_revoke(self, consumer: Any, partitions: list[int]) -> None:
        self._record("quix revoke", partitions)

    def _on_lost(self, consumer: Any, partitions: list[int]) -> None:
        self._record("quix lost", partitions)


def test_intake_hears_of_a_rebalance_after_quix_and_reads_wait_for_both() -> None:
    app = FakeApp()
    heard: list[tuple[str, list[int]]] = []

    def hear(name: str) -> Any:
        def call(partitions: list[int]) -> None:
            assert app.reads is not None and app.reads._lock.locked()  # noqa: SLF001
            heard.append((name, partitions))
        return call

    # The order of quix_worker/app.py (the hooks) and quix_worker/worker.py (the reads).
    private.on_rebalance(app, hear("assigned"), hear("revoked"))  # type: ignore[arg-type]
    app.reads = private.StateReads(app, "journal")  # type: ignore[arg-type]

    app._on_assign(None, [0, 1])  # noqa: SLF001
    app._on_revoke(None, [1])  # noqa: SLF001
    app._on_lost(None, [0])  # noqa: SLF001

    assert app.calls == [("quix assign", [0, 1]), ("quix revoke", [1]), ("quix lost", [0])]
    assert heard == [("assigned", [0, 1]), ("revoked", [1]), ("revoked", [0])]
    assert not app.reads._lock.locked()  # noqa: SLF001


def test_readiness_follows_the_assignment_and_the_recovery_without_waiting_for_the_lock() -> None:
    from types import SimpleNamespace

    app = FakeApp()
    recovery = SimpleNamespace(partitions={})
    app._state_manager = SimpleNamespace(_recovery_manager=recovery)  # type: ignore[attr-defined]  # noqa: SLF001
    seen_inside: list[tuple[bool, bool]] = []
    record = app._record

    def record_and_probe(name: str, partitions: list[int]) -> None:
        record(name, partitions)
        seen_inside.append(reads.state())  # a probe during a rebalance callback returns at once

    app._record = record_and_probe  # type: ignore[method-assign]
    reads = app.reads = private.StateReads(app, "journal")  # type: ignore[arg-type]

    assert reads.state() == (False, True)  # not in the group yet
    app._on_assign(None, [0, 1])  # noqa: SLF001
    assert reads.state() == (True, False)  # ready
    recovery.partitions = {1: {"default": object()}}
    assert reads.state() == (True, True)  # recovering a partition
    recovery.partitions = {}
    # Eager rebalancing: everything goes back first, then an assignment (an empty one when
    # there are more workers than partitions) ends it.
    app._on_revoke(None, [0, 1])  # noqa: SLF001
    assert reads.state() == (True, True)  # rebalancing
    app._on_assign(None, [])  # noqa: SLF001
    assert reads.state() == (True, False)
    app._on_lost(None, [])  # noqa: SLF001
    assert reads.state() == (True, True)
    assert seen_inside == [(False, True), (True, True), (True, True), (True, True)]
