"""`mynapoint reask [--send]`: list the requests that wait for a claim's answer, and ask again.

Argparse wiring and the command; the Kafka work is `clients.reask`. docs/RUNBOOK.md "A request
waits for a claim's answer" is the procedure.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cli import Lazy, add_app_arguments, app_arguments
from schemas.settings import SECONDS, BadSetting


def register(sub: Any, lazy: Lazy) -> None:
    s = sub.add_parser(
        "reask",
        help="list the requests waiting for a claim's answer; --send asks their claims again",
        description=(
            "Reads every person's record from the app's persons changelog and lists the requests "
            "that wait for the answer to a cross-person claim (an account's holder, a place in "
            "the reservation budget): person, event and claim, one a line. With --send, their "
            "claim requests are sent again to the claims topic. Safe while the workers run: a "
            "claim asked again gets the same answer, and an answer for a request already "
            "decided is a repeat. docs/RUNBOOK.md, \"A request waits for a claim's answer\"."
        ),
    )
    s.add_argument("--send", action="store_true",
                   help="send the waiting requests' claims again (default: only list them)")
    add_app_arguments(s)
    s.add_argument("--timeout", type=SECONDS, default=600.0, metavar="SECONDS",
                   help="give up reading or sending after this long (default 600)")
    s.set_defaults(func=lazy("cli.reask", "cmd_reask"))


def cmd_reask(args: argparse.Namespace) -> int:
    from clients.connect import run_blocking
    from clients.history import client_kwargs_from_env
    from clients.reask import ReaskFailed, send_requests, waiting_requests

    try:
        bootstrap, app_id = app_arguments(args)
    except BadSetting as exc:
        print(f"mynapoint reask: {exc}", file=sys.stderr)
        return 2
    kwargs = client_kwargs_from_env()
    try:
        waiting = run_blocking(waiting_requests(bootstrap, app_id,
                                                timeout=args.timeout, **kwargs))
        for r in waiting:
            print(f"{r.person_id}\t{r.event_id}\t{r.kind}\t{r.key}")
        if not waiting:
            print("mynapoint reask: no request waits for a claim's answer", file=sys.stderr)
        elif args.send:
            sent = run_blocking(send_requests(bootstrap, waiting, timeout=args.timeout, **kwargs))
            print(f"mynapoint reask: asked again for {sent:,} waiting requests", file=sys.stderr)
        else:
            print(f"mynapoint reask: {len(waiting):,} requests wait for a claim's answer; "
                  "--send asks again", file=sys.stderr)
    except ReaskFailed as exc:
        print(f"mynapoint reask: {exc}", file=sys.stderr)
        return 2
    return 0
