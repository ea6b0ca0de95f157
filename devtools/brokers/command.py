"""`mynapoint broker`: a local broker in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from devtools.brokers import BrokerError, make_broker
from schemas.settings import ENV


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

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        print(broker.bootstrap, flush=True)
        print(
            f"mynapoint broker: {broker.describe()} on {broker.bootstrap}; "
            f"export {ENV['bootstrap'].var}={broker.bootstrap}; Ctrl-C stops it",
            file=sys.stderr,
            flush=True,
        )
        code = broker.wait()
        print(f"mynapoint broker: the broker exited with code {code}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        broker.stop()
