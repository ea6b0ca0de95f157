"""The `mynapoint` command. Subcommands that need Kafka import the `agents` package lazily, so the
offline ones (simulate, schema) run without faust, aiokafka or rocksdict ever being imported."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from schemas.settings import COUNT, ENV, SHARE, from_env
from streams.core.config import ConfigError, RulesConfig, load_config


def _config(path: str | None) -> RulesConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise SystemExit(f"mynapoint: {exc}") from None


def cmd_simulate(args: argparse.Namespace) -> int:
    from streams.audit.simulate import simulate_to
    from streams.audit.summary import Summary

    cfg = _config(args.config)
    summary = Summary() if args.summary else None
    if args.events == "-":
        stream = sys.stdin.buffer
    else:
        try:
            stream = open(args.events, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            print(f"mynapoint simulate: cannot read {args.events}: {exc.strerror}", file=sys.stderr)
            return 2
    try:
        out = open(args.output, "wb") if args.output else sys.stdout.buffer
        try:
            simulate_to(stream, out, cfg, summary.observe if summary else None)
        finally:
            if args.output:
                out.close()
    except BrokenPipeError:
        # A reader such as `head` went away: not an error of ours.
        return 0
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    if summary is not None:
        print(summary.render(cfg), file=sys.stderr)
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from schemas.jsonschema import input_event_schema, outcome_schema

    schema = outcome_schema() if args.outcomes else input_event_schema()
    print(json.dumps(schema, indent=2, ensure_ascii=False))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    # Resolved as the worker resolves it, so that on a worker's host this prints its rules.
    path = args.config or from_env("config")
    if path and not args.config:
        print(f"mynapoint config: from ${ENV['config'].var} ({path})", file=sys.stderr)
    cfg = _config(path)
    print(json.dumps({"rules_version": cfg.version, **cfg.to_dict()}, indent=2, default=str))
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from devtools.demo import write_history

    out = open(args.output, "wb") if args.output != "-" else sys.stdout.buffer
    try:
        n = write_history(out, people=args.people, seed=args.seed, bad_ratio=args.bad_ratio)
    finally:
        if args.output != "-":
            out.close()
    print(f"wrote {n} events for {args.people} people", file=sys.stderr)
    return 0


def _lazy(module: str, func: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        import importlib

        return int(getattr(importlib.import_module(module), func)(args) or 0)

    return run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mynapoint",
        description="Mynapoint (マイナポイント) stream processor: rules, simulation and the Kafka pipeline.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("simulate", help="run the rules over a JSONL file of events, no broker")
    s.add_argument("events", metavar="EVENTS.jsonl", help="events, one JSON object per line; - for stdin")
    s.add_argument("--config", metavar="FILE", help="TOML configuration (defaults: RULES.md)")
    s.add_argument("--output", "-o", metavar="FILE", help="write outcomes here instead of stdout")
    s.add_argument(
        "--summary", action="store_true", help="print a readable summary to stderr at the end"
    )
    s.set_defaults(func=cmd_simulate)

    s = sub.add_parser("schema", help="print the JSON Schema of the input events (or, with "
                       "--outcomes, of the outcomes)")
    s.add_argument("--outcomes", action="store_true",
                   help="the outcomes' instead (decisions, grants, alerts, dead letters)")
    s.set_defaults(func=cmd_schema)

    s = sub.add_parser("config", help="print the resolved configuration and its rules version")
    s.add_argument("--config", metavar="FILE",
                   help=f"TOML configuration (default: ${ENV['config'].var}, as the worker "
                   "resolves it; else RULES.md's defaults)")
    s.set_defaults(func=cmd_config)

    s = sub.add_parser("generate", help="write a generated demo history (JSONL)")
    s.add_argument("--people", type=COUNT, default=1000, help="people (default 1000)")
    s.add_argument("--seed", type=int, default=1,
                   help="random seed: the same seed, the same history (default 1)")
    s.add_argument("--bad-ratio", type=SHARE, default=0.002,
                   help="share of malformed lines, 0 to 1 (default 0.002)")
    s.add_argument("--output", "-o", default="-", metavar="FILE",
                   help="where to write it (default: - for stdout)")
    s.set_defaults(func=cmd_generate)

    from cli.pipeline import register  # only wires argparse; imports no faust

    register(sub, _lazy)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
