"""A progress bar on stderr, shared by `mynapoint dev` and the auditor's long commands.

On a terminal the bar is redrawn in place; on a log (not a terminal) it prints a line per tenth,
or nothing at all when `quiet_off_tty` is set (for commands whose stderr is usually a log and whose
output speaks for itself).
"""

from __future__ import annotations

import sys
import time


def bar(done: int, total: int, started: float, unit: str = "decisions", width: int = 40) -> str:
    share = min(1.0, done / total) if total else 1.0
    filled = int(share * width)
    rate = done / max(time.monotonic() - started, 1e-6)
    return f"\r  [{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} {unit}  {rate:,.0f}/s"


class Progress:
    """A bar redrawn in place on a terminal; on a log (not a terminal), a line per tenth."""

    def __init__(self, total: int, unit: str = "decisions", *, quiet_off_tty: bool = False):
        self.total = total
        self.unit = unit
        self.started = time.monotonic()
        self.tty = sys.stderr.isatty()
        self.quiet = quiet_off_tty and not self.tty
        self.tenths = -1

    def show(self, done: int) -> None:
        if self.quiet:
            return
        if self.tty:
            sys.stderr.write(bar(done, self.total, self.started, self.unit))
        else:
            tenths = 10 * done // self.total if self.total else 10
            if tenths == self.tenths:
                return
            self.tenths = tenths
            sys.stderr.write(bar(done, self.total, self.started, self.unit).lstrip("\r") + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        """Ends the bar's line (on a terminal)."""
        if self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()
