"""Pausing Python's cyclic garbage collector while a history is built, folded or decided.

Offline runs (simulate, replay, export, what-if) allocate only acyclic values (frozen Structs,
tuples, dicts of them), which reference counting frees at once; but with millions of live
records every full collection walks them all to find nothing (about 45% of simulate's time on
a million events; replay a third slower). Anything cyclic made meanwhile is collected once the
collector is back on.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """Suspends the cyclic collector for the block, and restores it after. Nesting is fine: an
    inner block leaves the collector disabled for the outer one."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        # Hand what was allocated meanwhile to the oldest generation without scanning it (else
        # the first young collection after `enable` walks every one of those objects once).
        gc.freeze()
        gc.unfreeze()
        if was_enabled:
            gc.enable()
