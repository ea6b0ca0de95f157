"""The tree is the architecture: each layer imports only the layers below it.

    schemas          the contract (events, outcomes, journal, topics, settings names)
    streams.core     what decides: the pure rules core
    streams.audit    what audits: offline engines over a history (simulate, replay, explain, ...)
    streams.pipeline what a worker does with each record, on any engine (intake, ledger, claims)
    streams.web      what a worker answers for one person, on any engine (the status API)
    clients          Kafka clients outside any consumer group (admin, produce, history)
    agents           the Faust runtime (the workers)
    quix_worker      the Quix Streams runtime (the second engine's workers)
    devtools         local brokers, `mynapoint dev`, the demo generator
    cli              the `mynapoint` command, above everything

The rules core must not depend on the streaming stack either: one core serves the pipeline,
simulate, replay and what-if only if it runs without Faust, aiokafka or RocksDB. Nor must the
pipeline's steps: they are the engine-independent side of the runtime boundary
(streams/pipeline/runtime.py), the same code whichever engine runs them.
"""

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STREAMING_STACK = ("faust", "aiokafka", "rocksdict", "mode", "kafka", "quixstreams",
                   "confluent_kafka")

# layer -> the project layers it may import (itself included). Anything not listed is upward.
ALLOWED: dict[str, set[str]] = {
    "schemas": {"schemas"},
    "streams.core": {"schemas", "streams.core"},
    "streams.audit": {"schemas", "streams.core", "streams.audit"},
    "streams.pipeline": {"schemas", "streams.core", "streams.pipeline"},
    "streams.web": {"schemas", "streams.core", "streams.audit", "streams.web"},
    "clients": {"schemas", "streams.core", "streams.audit", "clients"},
    "agents": {"schemas", "streams.core", "streams.audit", "streams.pipeline", "streams.web",
               "clients", "agents"},
    # The two engines are siblings: neither imports the other.
    "quix_worker": {"schemas", "streams.core", "streams.audit", "streams.pipeline",
                    "streams.web", "clients", "quix_worker"},
    "devtools": {"schemas", "streams.core", "streams.audit", "streams.pipeline", "streams.web",
                 "clients", "agents", "devtools"},
    "cli": set(),  # the top: may import every layer
}
PROJECT = ("schemas", "streams", "clients", "agents", "quix_worker", "devtools", "cli")


def _layer_of(module: str) -> str | None:
    for layer in sorted(ALLOWED, key=len, reverse=True):
        if module == layer or module.startswith(layer + "."):
            return layer
    return "streams" if module == "streams" else None


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every absolute import in a file, at any depth (lazy imports inside functions too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            # `from streams import core` names a submodule
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def _files(layer: str) -> list[Path]:
    return sorted((ROOT / layer.replace(".", "/")).rglob("*.py"))


def test_every_project_module_belongs_to_a_layer():
    stray = [p.relative_to(ROOT).as_posix() for p in (ROOT / "streams").glob("*.py")
             if p.name != "__init__.py"]
    assert stray == [], ("a module directly under streams/ belongs in streams/core, streams/audit, "
                         "streams/pipeline or streams/web")


@pytest.mark.parametrize("layer", [k for k in ALLOWED if k != "cli"])
def test_no_upward_imports(layer):
    offenders = []
    for path in _files(layer):
        for lineno, module in _imports(path):
            if module.split(".")[0] not in PROJECT:
                continue
            target = _layer_of(module)
            if target is None or target == "streams":
                continue  # `from streams.core import x` also yields `streams.core.x`; the package itself
            if target not in ALLOWED[layer]:
                offenders.append(f"{path.relative_to(ROOT)}:{lineno} imports {module}")
    assert offenders == []


def test_the_check_sees_an_upward_import(tmp_path):
    # The guard can fail: a core file that imports the runtime is caught.
    bad = tmp_path / "x.py"
    bad.write_text("def f():\n    from agents.app import create_app\n")
    assert [m for _, m in _imports(bad)] == ["agents.app", "agents.app.create_app"]
    assert _layer_of("agents.app") not in ALLOWED["streams.core"]


def _modules(*packages: str) -> list[str]:
    names = []
    for package in packages:
        names.append(package)
        path = ROOT / package.replace(".", "/")
        for info in pkgutil.walk_packages([str(path)], prefix=f"{package}."):
            names.append(info.name)
    return names


def _loaded_stack(code: str) -> list[str]:
    code += (f"\nprint(json.dumps(sorted(n for n in sys.modules "
             f"if n.split('.')[0] in {STREAMING_STACK!r})))\n")
    out = subprocess.run([sys.executable, "-c", "import json, sys\n" + code], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_core_modules_exist():
    mods = _modules("schemas", "streams")
    assert "streams.core.rules" in mods and "schemas.events" in mods
    assert "streams.audit.simulate" in mods


def test_core_audit_and_pipeline_import_no_streaming_stack():
    mods = _modules("schemas", "streams")
    assert _loaded_stack(f"import importlib\nfor m in {mods!r}: importlib.import_module(m)") == []


def test_cli_parser_imports_no_streaming_stack():
    # Building the whole `mynapoint` parser (with the pipeline's subcommands) stays light too.
    assert _loaded_stack("from cli.main import build_parser\nbuild_parser()") == []


def _private_reaches(path: Path) -> list[str]:
    """Reads of another object's private attributes (`x._name`, not `self._name`)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"})):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.attr}")
    return found


def test_only_one_module_reaches_into_quix_streams_internals():
    modules = _files("quix_worker")
    assert ROOT / "quix_worker" / "private.py" in modules
    offenders = [hit for path in modules if path.name != "private.py"
                 for hit in _private_reaches(path)]
    assert offenders == []
    # The check can fail: the private module itself is full of them.
    assert _private_reaches(ROOT / "quix_worker" / "private.py")
