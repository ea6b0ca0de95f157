"""`mynapoint rescale`: bring a stopped deployment from N to M partitions (issue 11).

Argparse wiring and the command; the Kafka work is `clients.rescale`, the pure re-partitioning
`streams.audit.rescale`. docs/RUNBOOK.md "Scaling" is the procedure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cli import Lazy, add_app_arguments, app_arguments
from schemas.settings import ENV, SECONDS, BadSetting, from_env


def register(sub: Any, lazy: Lazy) -> None:
    s = sub.add_parser(
        "rescale",
        help="bring every topic of a stopped app to more partitions, state and all",
        description=(
            "Run while every worker of the app is stopped. Grows the inputs and outputs to M "
            "partitions, moves the input records not yet decided to their new partition, and "
            "rebuilds the journal, the claims and the tables' changelogs at M, so that workers "
            "started with --partitions M on fresh data directories go on as if the deployment "
            "had always had M partitions. Safe to run again after a crash (it finishes the job "
            "from its state file). docs/RUNBOOK.md, \"Scaling\"."
        ),
    )
    add_app_arguments(s)
    s.add_argument("--to-partitions", type=int, required=True, metavar="M",
                   help="the new partition count (larger than today's)")
    s.add_argument("--config", metavar="FILE",
                   help="the rules configuration the workers run with (default: "
                   f"${ENV['config'].var}, else RULES.md's defaults); refused if the published "
                   "outcomes were decided under other rules")
    s.add_argument("--state", metavar="FILE",
                   help="the state file: the progress; the snapshot of the rebuilt topics goes "
                   "beside it (FILE.snapshot.db, a directory); keep both until the command says "
                   "done (default: "
                   "./mynapoint-rescale-<app-id>.state)")
    s.add_argument("--timeout", type=SECONDS, default=600.0, metavar="SECONDS",
                   help="give up a single read or topic operation after this long (default 600)")
    s.set_defaults(func=lazy("cli.rescale", "cmd_rescale"))


def cmd_rescale(args: argparse.Namespace) -> int:
    from clients.history import client_kwargs_from_env
    from clients.rescale import RescaleFailed, rescale
    from streams.core.config import ConfigError, load_config

    def err(msg: str) -> int:
        print(f"mynapoint rescale: {msg}", file=sys.stderr)
        return 2

    try:
        bootstrap, app_id = app_arguments(args)
    except BadSetting as exc:
        return err(str(exc))
    if args.to_partitions < 2:
        return err("--to-partitions must be at least 2")
    try:
        cfg = load_config(args.config or from_env("config"))
    except ConfigError as exc:
        return err(str(exc))
    state = Path(args.state or f"mynapoint-rescale-{app_id}.state").resolve()

    def say(line: str) -> None:
        print(f"mynapoint rescale: {line}", file=sys.stderr, flush=True)

    try:
        summary = rescale(bootstrap, app_id, args.to_partitions, cfg.version, state, say=say,
                          timeout=args.timeout, **client_kwargs_from_env())
    except RescaleFailed as exc:
        return err(str(exc))
    print(summary.render())
    print(f"(state file {state} and its snapshot beside it: keep them with the change record; "
          "they are not needed any more)")
    return 0
