"""Reading a Faust table on the hot path with one store lookup.

`table.get(key)` on a Faust table goes through `FastUserDict.__getitem__`, which asks the store
`key in store` and then `store[key]`: on the RocksDB store, two reads of the same key for every
key present (the ledger reads the person's record and timeline head for every journal entry).
`getter(table)` reads the table's store (`Collection.data`, Faust's public "underlying table
storage") once, and still notifies the table of the read (`on_key_get`, so Faust's own sensors
count it as before). Same value, same `None` for a missing key, for tables without a default
(every table of this worker); the store takes the partition from the current event either way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streams.pipeline.runtime import Store


def getter(table: Any) -> Callable[[bytes], bytes | None]:
    """`table.get` (for a table without a default), reading its store once."""
    on_key_get = table.on_key_get

    def get(key: bytes) -> bytes | None:
        on_key_get(key)
        value: bytes | None = table.data.get(key)
        return value

    return get


def store(table: Any) -> Store:
    """The table as the pipeline's steps see it: `getter(table)`, and a whole-value write, which
    Faust changelogs (it changelogs on assignment only)."""
    return Store(getter(table), table.__setitem__)
