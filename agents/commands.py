"""Argparse wiring for the pipeline's subcommands. Importing this module imports no faust,
aiokafka or rocksdict: each command loads its implementation only when it runs."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

Lazy = Callable[[str, str], Callable[[argparse.Namespace], int]]


def register(sub: Any, lazy: Lazy) -> None:
    """Adds the pipeline's subcommands; later issues add theirs here."""
    return None
