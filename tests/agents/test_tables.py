"""`agents.tables.getter` reads a table as `table.get` does (one store lookup instead of two), and
`streams.pipeline.metrics.labelled` counts into the very child `labels()` gives."""

from __future__ import annotations

import faust
from prometheus_client import CollectorRegistry, Counter

from agents.tables import getter, store
from streams.pipeline import metrics


def _table() -> tuple[faust.App, object]:
    app = faust.App("test-tables", store="memory://")
    table = app.Table("t", key_type=bytes, value_type=bytes)
    table.key_serializer = "raw"  # type: ignore[attr-defined]
    table.value_serializer = "raw"  # type: ignore[attr-defined]
    return app, table


def test_getter_reads_what_get_reads_and_tells_the_table():
    _, table = _table()
    table.data[b"P1"] = b"\x93\x02\xc0\x80"  # type: ignore[attr-defined]
    seen: list[bytes] = []
    table.on_key_get = seen.append  # type: ignore[attr-defined]
    get = getter(table)
    assert get(b"P1") == table.get(b"P1") == b"\x93\x02\xc0\x80"  # type: ignore[attr-defined]
    assert get(b"P2") is None and table.get(b"P2") is None  # type: ignore[attr-defined]
    assert seen == [b"P1", b"P1", b"P2", b"P2"]


def test_labelled_is_the_child_labels_gives():
    registry = CollectorRegistry()
    counter = Counter("t_labelled", "test", ["a", "b"], registry=registry)
    child = metrics.labelled(counter, "x", "y")
    assert child is counter.labels("x", "y") is metrics.labelled(counter, "x", "y")
    child.inc()
    metrics.labelled(counter, "x", "y").inc(2)
    assert registry.get_sample_value("t_labelled_total", {"a": "x", "b": "y"}) == 3
    assert metrics.labelled(counter, "x", "z") is not child


def test_store_writes_through_the_table():
    # A whole-value assignment: the write Faust changelogs.
    _, table = _table()
    written: list[bytes] = []
    table.on_key_set = lambda key, value: written.append(key)  # type: ignore[attr-defined]
    read, write = store(table)
    write(b"P1", b"v1")
    assert read(b"P1") == b"v1" == table[b"P1"]  # type: ignore[index]
    assert written == [b"P1"]
