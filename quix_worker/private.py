"""The only module that touches Quix Streams' private internals (quixstreams 3.28).

The runtime boundary needs these things Quix's public API does not give, each taken here in one
place so that an upgrade of Quix breaks this file and nothing else:

- **Offsets of the input topics come from intake's acknowledgements.** Quix stores the offset of
  every message once its dataframe returns, and its checkpoint commits the highest one. Intake
  holds records for event-time alignment and only acknowledges them once journaled, in offset
  order (`streams.pipeline.intake`): for the input topics, Quix's own store is skipped and the
  acknowledgements are stored instead (`acknowledged_offsets`), so no checkpoint commits past a
  record still held. A crash loses nothing held; its records are read again.
- **Partition assignment and revocation** (`on_rebalance`): Quix handles them inside
  `Application._on_assign`, `_on_revoke` and `_on_lost`; intake must learn which partitions it
  lost (what they held is dropped: their new owner reads it again) and the committed offsets of
  the partitions it got.
- **What each checkpoint committed** (`committed_offsets`): the ledger forgets the outcomes of
  journal entries below its partition's committed offset (everything before it was sent), which
  keeps a person's record small; Quix does not say what it committed.
- **A tick between polls** (`after_each_poll`): intake releases what waited for silent sources
  even when no record arrives; Quix has no timers, so the tick runs after each poll of its loop.

- **Another person's state in the same partition** (`state_of`): Quix scopes the state it hands
  a stateful dataframe to the record's key; a journal record that is a batch holds entries of
  several persons of its partition, and each is folded in its own person's state: the same
  partition transaction, scoped to that person (`PartitionTransaction.as_state`, as Quix's
  windows do), reached through the record's state.
- **Reads of the ledger's state from the status API's thread** (`StateReads`): Quix opens and
  closes state partitions in its rebalance callbacks; a lock held around those callbacks and
  around each read keeps a read from meeting a closed database. Reads see what the last
  checkpoint wrote (Quix writes a transaction's changes at its checkpoint).

On the local Tansu broker only (`tansu_compat`), the end offsets Quix's state recovery takes from
ListOffsets are corrected from a Fetch (`correct_end_offsets_for_tansu`; the bug is in
../shared/notes/BROKER.md and clients/end_offsets.py).

And the app's producer and consumer (`producer`, `consumer`): records sent through the app's own
producer are flushed by each checkpoint before its offsets are committed (in the exactly-once mode,
inside its transaction), and watermarks, committed offsets and seeks are the consumer's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from quixstreams import Application

from schemas.topics import is_quix_changelog

#: Stores one processed offset in the app's current checkpoint: (topic, partition, offset).
StoreOffset = Callable[[str, int, int], None]


def producer(app: Application) -> Any:
    """The app's producer (a `quixstreams.internal_producer.InternalProducer`)."""
    return app._producer  # noqa: SLF001


def consumer(app: Application) -> Any:
    """The app's consumer (a `quixstreams.internal_consumer.InternalConsumer`)."""
    return app._consumer  # noqa: SLF001


def state_of(state: Any, key: bytes) -> Any:
    """The `State` of `key` in the partition transaction of `state` (the record being handled):
    what Quix hands a stateful dataframe for a record keyed `key` on that partition."""
    return state._transaction.as_state(prefix=key)  # noqa: SLF001


def state_databases(app: Application) -> dict[str, list[Any]]:
    """The RocksDB databases (rocksdict `Rdict`s) of the state partitions this worker holds, by
    the topic of the stateful dataframe they belong to (its stream id)."""
    out: dict[str, list[Any]] = {}
    for stream_id, stores in list(app._state_manager.stores.items()):  # noqa: SLF001
        for store in list(stores.values()):
            out.setdefault(str(stream_id), []).extend(
                partition._db  # type: ignore[attr-defined]  # noqa: SLF001
                for partition in list(store.partitions.values()))
    return out


def acknowledged_offsets(app: Application, topics: Iterable[str]) -> StoreOffset:
    """Stops Quix from storing the offsets of `topics` after each message, and returns what
    stores one: the caller stores what it acknowledged, in offset order per partition."""
    context = app._processing_context  # noqa: SLF001
    original = context.store_offset
    skipped = frozenset(topics)

    def store_offset(topic: str, partition: int, offset: int) -> None:
        if topic not in skipped:
            original(topic=topic, partition=partition, offset=offset)

    # An instance attribute: `Application._process_message` looks the method up on each message.
    context.store_offset = store_offset  # type: ignore[method-assign]

    def acknowledged(topic: str, partition: int, offset: int) -> None:
        original(topic=topic, partition=partition, offset=offset)

    return acknowledged


#: Quix's rebalance callbacks (`Application._on_assign`, `_on_revoke`, `_on_lost`), which the app
#: hands to confluent-kafka's `subscribe` in `run()`.
_REBALANCE_CALLBACKS = ("_on_assign", "_on_revoke", "_on_lost")
_Rebalance = Callable[[Any, list[Any]], None]


def _wrap_rebalance(app: Application, wrap: Callable[[str, _Rebalance], _Rebalance]) -> None:
    """Replaces each of the app's rebalance callbacks by `wrap(name, callback)`."""
    for name in _REBALANCE_CALLBACKS:
        setattr(app, name, wrap(name, getattr(app, name)))


def on_rebalance(app: Application, assigned: Callable[[list[Any]], None],
                 revoked: Callable[[list[Any]], None]) -> None:
    """Calls `assigned(partitions)` after Quix took partitions, and `revoked(partitions)` after
    it gave them up (its checkpoint committed first) or lost them (nothing committed); both get
    confluent-kafka `TopicPartition`s. Set before `app.run()`, which subscribes with them."""

    def then(name: str, callback: _Rebalance) -> _Rebalance:
        ours = assigned if name == "_on_assign" else revoked

        def called(consumer: Any, partitions: list[Any]) -> None:
            callback(consumer, partitions)
            ours(partitions)

        return called

    _wrap_rebalance(app, then)


def after_each_poll(app: Application, tick: Callable[[], None]) -> None:
    """Calls `tick()` after each poll of the app's loop (a message processed, or none within
    the app's `consumer_poll_timeout`). Set before `app.run()`."""
    process = app._process_message  # noqa: SLF001

    def _process_message(dataframes: Any) -> None:
        process(dataframes)
        tick()

    app._process_message = _process_message  # type: ignore[method-assign, assignment]  # noqa: SLF001


def correct_end_offsets_for_tansu(app: Application) -> None:
    """Makes the app consumer's ListOffsets answers (`get_watermark_offsets` not `cached`, which
    Quix's state recovery uses for a changelog's end) right on Tansu.

    Tansu answers ListOffsets(latest) with the first offset of a partition's last batch plus one.
    A Fetch from that offset returns the last batch, and with it the true high watermark, which
    librdkafka then caches: a side consumer (no group) asks for it.
    """
    from confluent_kafka import Consumer, TopicPartition

    consumer = app._consumer  # noqa: SLF001
    reported = consumer.get_watermark_offsets
    side: list[Any] = []

    def get_watermark_offsets(partition: Any, timeout: float | None = None,
                              cached: bool = False) -> tuple[int, int]:
        low, high = reported(partition, timeout=timeout, cached=cached)
        # Only a changelog's end matters (Quix checks a source topic's low watermark alone), and
        # a Fetch per partition at every assignment costs seconds on dozens of source partitions.
        if cached or high <= low or not is_quix_changelog(partition.topic):
            return low, high
        if not side:
            config = {k: v for k, v in consumer._consumer_config.items()  # noqa: SLF001
                      if not k.startswith(("on_", "partition.assignment"))}
            side.append(Consumer({**config, "group.id": "mynapoint-tansu-compat",
                                  "enable.auto.commit": False, "auto.offset.reset": "latest",
                                  "fetch.wait.max.ms": 10}))
        fetcher = side[0]
        tp = TopicPartition(partition.topic, partition.partition, high - 1)
        fetcher.assign([tp])
        try:
            fetcher.consume(num_messages=1, timeout=10 if timeout is None else timeout)
            _, fetched = fetcher.get_watermark_offsets(tp, cached=True)
        finally:
            fetcher.unassign()
        return low, max(high, fetched)

    consumer.get_watermark_offsets = get_watermark_offsets  # type: ignore[method-assign]


def committed_offsets(app: Application) -> dict[tuple[str, int], int]:
    """A dict Quix keeps up to date with the offsets each of its checkpoints committed (the next
    offset to read, per (topic, partition)); entries of revoked partitions stay until the next
    commit of the partition (they only ever fall behind: the partition's next owner commits)."""
    context = app._processing_context  # noqa: SLF001
    commit = context.commit_checkpoint
    committed: dict[tuple[str, int], int] = {}

    def commit_checkpoint(force: bool = False, revoking: bool = False) -> None:
        before = context._checkpoint  # noqa: SLF001
        commit(force=force, revoking=revoking)
        if before is not None and context._checkpoint is not before:  # noqa: SLF001
            # Committed (or closed empty): what it stored is what the group has now.
            for tp, offset in before._tp_offsets.items():  # noqa: SLF001
                committed[tp] = offset + 1

    context.commit_checkpoint = commit_checkpoint  # type: ignore[method-assign]
    return committed


#: What `StateReads.read` answers when this worker does not hold the partition, or is recovering it.
NOT_OWNED = "not owned"
RECOVERING = "recovering"


class StateReads:
    """Reads of one stateful dataframe's state from another thread than Quix's (the status API).

    `read(partition, fn)` calls `fn(get)` under the lock, `get(key)` reading the partition's
    RocksDB (None: no such key), and returns what `fn` returns; or `NOT_OWNED` when this worker
    does not hold the partition, `RECOVERING` while Quix recovers it from its changelog. Set up
    before `app.run()`.
    """

    def __init__(self, app: Application, source: str) -> None:
        self._app = app
        self._source = source
        self._lock = threading.Lock()
        self._joined = False  # the group has given this worker partitions at least once
        self._assigned = False  # ... and has not taken them back since
        _wrap_rebalance(app, self._locked)

    def _locked(self, name: str, callback: _Rebalance) -> _Rebalance:
        def locked(consumer: Any, partitions: list[Any]) -> None:
            with self._lock:
                callback(consumer, partitions)
                # Quix rebalances eagerly: a revocation takes every partition, until the next
                # assignment (an empty one included) gives the worker its share.
                self._assigned = name == "_on_assign"
                self._joined = self._joined or self._assigned

        return locked

    def state(self) -> tuple[bool, bool]:
        """(joined, busy) for the readiness probe: whether the group has given this worker its
        partitions yet (none is an assignment too), and whether it is rebalancing (between a
        revocation and the next assignment, or inside a rebalance callback, which holds the
        lock: never waited for, so the probes stay answered) or recovering any partition."""
        if not self._lock.acquire(blocking=False):
            return self._joined, True
        try:
            recovery = self._app._state_manager._recovery_manager  # noqa: SLF001
            recovering = recovery is not None and bool(recovery.partitions)
            return self._joined, not self._assigned or recovering
        finally:
            self._lock.release()

    def read(self, partition: int, fn: Callable[[Callable[[bytes], bytes | None]], Any]) -> Any:
        with self._lock:
            stores = self._app._state_manager.stores.get(self._source) or {}  # noqa: SLF001
            store = stores.get("default")
            held = store.partitions.get(partition) if store is not None else None
            if held is None:
                return NOT_OWNED
            recovery = self._app._state_manager._recovery_manager  # noqa: SLF001
            if recovery is not None and partition in recovery.partitions:
                return RECOVERING
            db = held._db  # type: ignore[attr-defined]  # noqa: SLF001

            def get(key: bytes) -> bytes | None:
                value = db.get(key)
                return value if value is None else bytes(value)

            return fn(get)
