"""Prometheus's own binaries (`prometheus`, `promtool`) for the tests of ops/.

`./run setup` installs them (Debian's `prometheus` package) where they are missing; a test that
needs one and cannot find it fails saying so, it is never skipped.
"""

from __future__ import annotations

import shutil

import pytest


def require(binary: str) -> str:
    """The path of `binary` on PATH, or a failed test saying how to install it."""
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"`{binary}` is not installed: run ./run setup (it installs Debian's "
                    "prometheus package, which has prometheus and promtool)", pytrace=False)
    return path


def dashboard_targets(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, PromQL expression) of every query of a Grafana dashboard's panels."""
    out = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                out.append((inner["title"], target["expr"]))
    return out
