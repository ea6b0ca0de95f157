"""The `mynapoint` command line: argument parsing and wiring, above every other layer."""

import argparse
from collections.abc import Callable

#: What each module's `register(sub, lazy)` gets: `lazy(module, function)` is the handler of a
#: subcommand, imported only when that subcommand runs (cli/main.py `_lazy`).
Lazy = Callable[[str, str], Callable[[argparse.Namespace], int]]
