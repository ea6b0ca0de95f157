"""The rules core must not depend on the streaming stack: one core serves the pipeline, simulate
and replay only if it can run without them."""

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("faust", "aiokafka", "rocksdict", "mode", "kafka")


def _core_modules() -> list[str]:
    names = []
    for package in ("schemas", "streams"):
        names.append(package)
        for info in pkgutil.walk_packages([str(ROOT / package)], prefix=f"{package}."):
            names.append(info.name)
    return names


def test_core_modules_exist():
    mods = _core_modules()
    assert "streams.rules" in mods and "schemas.events" in mods and "streams.cli" in mods


def test_core_imports_no_streaming_stack():
    code = (
        "import importlib, json, sys\n"
        f"mods = {_core_modules()!r}\n"
        "for m in mods: importlib.import_module(m)\n"
        f"bad = sorted(n for n in sys.modules if n.split('.')[0] in {FORBIDDEN!r})\n"
        "print(json.dumps(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_cli_parser_imports_no_streaming_stack():
    # Building the whole `mynapoint` parser (with the pipeline's subcommands) stays light too.
    code = (
        "import json, sys\n"
        "from streams.cli import build_parser\n"
        "build_parser()\n"
        f"print(json.dumps(sorted(n for n in sys.modules if n.split('.')[0] in {FORBIDDEN!r})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_core_does_not_reach_into_agents():
    # Only the command-line front end may (lazily) load the pipeline's commands; the rules, the
    # schemas, simulate and replay take everything they need (topic names too) from the core.
    import ast

    offenders = []
    for package in ("schemas", "streams"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.relative_to(ROOT).as_posix() == "streams/cli.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                if any(n == "agents" or n.startswith("agents.") for n in names):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
