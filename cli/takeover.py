"""`mynapoint takeover --to quix|faust`: move a stopped deployment's state to the other engine.

Argparse wiring and the command; the Kafka work is `clients.takeover`, the layouts
`streams.audit.takeover`. docs/RUNBOOK.md "Changing the engine" is the procedure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cli import Lazy, add_app_arguments, app_arguments
from schemas.settings import ENGINES, SECONDS, BadSetting


def register(sub: Any, lazy: Lazy) -> None:
    s = sub.add_parser(
        "takeover",
        help="move a stopped app's state from one engine's changelogs to the other's",
        description=(
            "Run while every worker of the app is stopped. Copies the state (each person's "
            "record and timeline, the claim holders) from the changelogs of the engine the app "
            "ran on to those of the other engine (--to), then deletes the old ones. The consumer "
            "group's offsets stay as they are, so workers started with --engine TO, the same "
            "--app-id and empty data directories go on where the old ones stopped. On Apache "
            "Kafka (Tansu keeps stopped workers in the group). "
            "docs/RUNBOOK.md, \"Changing the engine\"."
        ),
    )
    s.add_argument("--to", required=True, choices=ENGINES,
                   help="the engine the app's workers will run on")
    add_app_arguments(s)
    s.add_argument("--timeout", type=SECONDS, default=600.0, metavar="SECONDS",
                   help="give up a single read or topic operation after this long (default 600)")
    s.add_argument("--work-dir", type=Path, metavar="DIR",
                   help="where the rows read are kept on disk until they are written back, in a "
                   "directory removed at the end (about as much as the compacted state "
                   "changelogs; default: the system's temporary directory, $TMPDIR)")
    s.set_defaults(func=lazy("cli.takeover", "cmd_takeover"))


def cmd_takeover(args: argparse.Namespace) -> int:
    from clients.history import client_kwargs_from_env
    from clients.takeover import TakeoverFailed, takeover

    def say(line: str) -> None:
        print(f"mynapoint takeover: {line}", file=sys.stderr, flush=True)

    try:
        bootstrap, app_id = app_arguments(args)
    except BadSetting as exc:
        print(f"mynapoint takeover: {exc}", file=sys.stderr)
        return 2
    if args.work_dir is not None and not args.work_dir.is_dir():
        print(f"mynapoint takeover: --work-dir {args.work_dir} is not a directory: give one this "
              "user can write to, with room for the state changelogs", file=sys.stderr)
        return 2
    try:
        summary = takeover(bootstrap, app_id, args.to, say=say, timeout=args.timeout,
                           work_dir=args.work_dir, **client_kwargs_from_env())
    except TakeoverFailed as exc:
        print(f"mynapoint takeover: {exc}", file=sys.stderr)
        return 2
    print(summary.render())
    return 0
