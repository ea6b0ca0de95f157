"""The Faust tuning every Faust worker uses; the settings themselves are engine-independent
(`streams.pipeline.settings.WorkerSettings`, re-exported here)."""

from __future__ import annotations

from typing import Any

from streams.pipeline.settings import WorkerSettings

__all__ = ["TUNING", "WorkerSettings"]

#: The Faust tuning measured in ../shared/notes/PERFORMANCE.md (larger batches and fetches);
#: bench/bench_pipeline.py gives its bare Faust relay the same, so the two compare fairly.
TUNING: dict[str, Any] = {
    "producer_linger_ms": 10,
    "producer_max_batch_size": 256 * 1024,
    "stream_buffer_maxsize": 65536,
    "broker_max_poll_records": 5000,
    "consumer_max_fetch_size": 4 * 1024 * 1024,
    "broker_commit_every": 10000,
    "broker_commit_interval": 1.0,
}
