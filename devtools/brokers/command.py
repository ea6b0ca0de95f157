"""`mynapoint broker`: a local broker in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from devtools.brokers import BrokerError, make_broker
from schemas.settings import ENV

#: How often the foreground wait looks for a stop signal (seconds).
WAKE_EVERY = 0.2


def cmd_broker(args: argparse.Namespace) -> int:
    kwargs: dict[str, Any] = {
        "port": args.port,
        "die_with_parent": True,
        "host": args.host,
        "log": None if args.quiet else sys.stderr.buffer,
    }
    if args.startup_timeout is not None:
        kwargs["startup_timeout"] = args.startup_timeout
    if args.data_dir is not None:
        if args.engine != "kafka":
            print("mynapoint broker: --data-dir is for --engine kafka (Tansu keeps everything in "
                  "memory)", file=sys.stderr)
            return 2
        kwargs["data_dir"] = args.data_dir
    try:
        broker = make_broker(args.engine, **kwargs)
        broker.start()
    except BrokerError as exc:
        print(f"mynapoint broker: {exc}", file=sys.stderr)
        return 2

    # Ctrl-C and SIGTERM are only noted by the handler, and the wait below polls for them: an
    # exception raised by a handler lands in whatever runs at that moment, and where that is a
    # finalizer Python prints "Exception ignored" and goes on, and the command never stopped
    # (seen once in the broker tests: SIGINT, still running a minute later).
    stopping: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        stopping.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(broker.bootstrap, flush=True)
        print(
            f"mynapoint broker: {broker.describe()} on {broker.bootstrap}; "
            f"export {ENV['bootstrap'].var}={broker.bootstrap}; Ctrl-C stops it",
            file=sys.stderr,
            flush=True,
        )
        while not stopping:
            code = broker.wait(timeout=WAKE_EVERY)
            if code is not None:
                print(f"mynapoint broker: the broker exited with code {code}", file=sys.stderr)
                return 1
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        broker.stop()
