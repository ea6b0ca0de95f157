"""A Faust worker for test_tansu_compat: recovers table `t` from its changelog, writes the table as
JSON to OUT once the active partitions are recovered, and exits.

Usage: python _faust_recovery_app.py BOOTSTRAP APP_ID PATCH(0|1) OUT DATADIR
"""

from __future__ import annotations

import json
import os
import sys

bootstrap, app_id, patch, out, datadir = sys.argv[1:6]
if patch == "1":
    from agents.faust_private import patch_for_tansu

    patch_for_tansu()

import faust  # noqa: E402 - after the optional patch, as a worker would do it

app = faust.App(
    app_id,
    broker=f"kafka://{bootstrap}",
    store="memory://",
    datadir=datadir,
    topic_partitions=1,
    broker_session_timeout=10,
    broker_rebalance_timeout=10,
    broker_heartbeat_interval=1,
    web_enabled=False,
)
table = app.Table("t", default=int, partitions=1)


@app.timer(0.1)
async def report() -> None:
    if app.tables.actives_ready:
        with open(out, "w", encoding="utf-8") as f:
            json.dump(dict(table.items()), f, sort_keys=True)
        os._exit(0)  # the result is written; skip the slow graceful shutdown


if __name__ == "__main__":
    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn", "--without-web"]
    app.main()
