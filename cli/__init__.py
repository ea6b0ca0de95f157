"""The `mynapoint` command line: argument parsing and wiring, above every other layer."""

import argparse
from collections.abc import Callable

from schemas.settings import ENV, flag_or_env, usable_app_id, usable_bootstrap

#: What each module's `register(sub, lazy)` gets: `lazy(module, function)` is the handler of a
#: subcommand, imported only when that subcommand runs (cli/main.py `_lazy`).
Lazy = Callable[[str, str], Callable[[argparse.Namespace], int]]


def add_app_arguments(s: argparse.ArgumentParser) -> None:
    """`--bootstrap` and `--app-id` of a command that works on a deployment's topics."""
    s.add_argument("--bootstrap", metavar="HOST:PORT",
                   help=f"Kafka bootstrap servers (default: ${ENV['bootstrap'].var})")
    s.add_argument("--app-id", help=f"the workers' --app-id (default: ${ENV['app_id'].var}, "
                   f"else {ENV['app_id'].default})")


def app_arguments(args: argparse.Namespace) -> tuple[str, str]:
    """The brokers and the app that `add_app_arguments` asked for (each flag, else its
    environment variable), if a command can use them; else raises `BadSetting`."""
    return (usable_bootstrap(flag_or_env("bootstrap", args.bootstrap)),
            usable_app_id(args.app_id))
