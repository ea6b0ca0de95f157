"""A broker process on loopback, started and stopped the same way whatever the broker: the base
of `devtools.brokers.tansu` and `devtools.brokers.kafka`.

`start()` returns only once the broker answers a Kafka metadata request; `stop()` terminates it
(SIGTERM) and kills it if it does not exit in time. `die_with_parent=True` (Linux) has the kernel
stop the broker when the thread that started it exits, even on SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from types import TracebackType
from typing import IO

from clients.connect import free_port, probe, run_blocking


class BrokerError(RuntimeError):
    """The local broker could not be found, started or reached."""


class BrokerNotInstalled(BrokerError):
    """What the broker needs (a package, a JDK, Maven) is not installed; the message says what."""


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


#: Where a broker listens unless told otherwise: loopback only.
LOOPBACK = "127.0.0.1"


class BrokerProcess:
    """A broker process on loopback; a context manager. Subclasses say how to start one
    (`prepare(port)` returns the command, after writing whatever the broker needs first).

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
        host: str = LOOPBACK,
        startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        log: IO[bytes] | None = None,
        die_with_parent: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._log = log
        self._own_log: IO[bytes] | None = None
        self.die_with_parent = die_with_parent
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        if self.port is None:
            raise BrokerError("the broker is not started")
        return f"{self.host}:{self.port}"

    #: "tansu" or "kafka": what `mynapoint broker --engine` and the tests call it.
    engine = ""
    #: Flags a worker needs against this broker (see `agents.faust_private.patch_for_tansu`).
    worker_flags: tuple[str, ...] = ()

    def prepare(self, port: int) -> list[str]:
        """The command that runs the broker on `port` (after any preparation it needs)."""
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def describe(self) -> str:
        """One line for `mynapoint broker`: what runs and where its data lives."""
        return self.engine

    def start(self) -> BrokerProcess:
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
        if not _port_free(self.host, port):
            raise BrokerError(f"port {port} on {self.host} is already in use")
        cmd = self.prepare(port)
        if self._log is None and self._own_log is None:
            self._own_log = tempfile.TemporaryFile(prefix=f"mynapoint-{self.engine}-")  # noqa: SIM115
        out = self._log if self._log is not None else self._own_log
        env = self.env()
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
                stop_process(process, self.stop_timeout)
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
            stop_process(process, self.stop_timeout)
        if self._own_log is not None:
            self._own_log.close()
            self._own_log = None
        self.cleanup()

    def cleanup(self) -> None:
        """What a stopped broker leaves to remove (its temporary data directory, say)."""

    def __enter__(self) -> BrokerProcess:
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
        return f"{type(self).__name__}({self.host}:{self.port}, {state})"


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


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within `timeout` seconds; waits."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)
