"""What one worker is started with (`mynapoint worker` fills it from flags and the environment,
agents/worker.py), and the Faust tuning every worker uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas import topics
from schemas.settings import ENV

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


def _default(name: str) -> Any:
    return ENV[name].default


@dataclass
class WorkerSettings:
    bootstrap: str = _default("bootstrap")
    app_id: str = _default("app_id")
    data_dir: str = _default("data_dir")
    partitions: int = topics.DEFAULT_PARTITIONS
    config_path: str | None = None
    web_port: int = int(_default("web_port"))
    web_host: str = _default("web_host")
    metrics_port: int | None = int(_default("metrics_port"))
    metrics_host: str = _default("metrics_host")
    broker_credentials: Any = None
    tansu_compat: bool = False
    # Event-time alignment: how long a silent input may hold back later events (seconds).
    idle_wait: float = float(_default("idle_wait"))
    # Faust's table_standby_replicas and processing_guarantee (README "For SREs").
    standby_replicas: int = int(_default("standby_replicas"))
    processing_guarantee: str = _default("processing_guarantee")
    # Bearer token of the status API (agents/web.py); None: no token asked.
    status_token: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
