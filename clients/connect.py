"""Connecting to Kafka from outside the workers: running a client coroutine from synchronous code,
quieting aiokafka's connect errors where the caller reports them itself, a readiness probe."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import socket
import threading
from collections import Counter
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on `host` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def failure_text(exc: BaseException) -> str:
    """What a failed connection says in a message: the error's text, or for one without any (a
    timeout: `asyncio.wait_for` raises a bare TimeoutError) what happened, never "()"."""
    text = str(exc)
    if text:
        return text
    if isinstance(exc, TimeoutError):
        return "no answer in time: is the address right, and can this machine reach it?"
    return type(exc).__name__


def run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Runs a coroutine to completion from synchronous code, even inside a running event loop
    (then in a helper thread with its own loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            error.append(exc)

    thread = threading.Thread(target=target, name="mynapoint-run-blocking", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


_QUIET = contextvars.ContextVar("mynapoint_quiet_connect_errors", default=False)


class _QuietConnectErrors(logging.Filter):
    """Drops aiokafka's "Unable connect to ..." errors logged where the caller reports a failed
    connection itself (readiness probes, the first connection of a CLI command)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_QUIET.get() and str(record.msg).startswith("Unable connect"))


_QUIET_FILTER = _QuietConnectErrors()


@contextlib.contextmanager
def quiet_connect_errors() -> Iterator[None]:
    """Within this block (and tasks started from it), aiokafka does not log failed connects."""
    logging.getLogger("aiokafka").addFilter(_QUIET_FILTER)  # added once (same object)
    token = _QUIET.set(True)
    try:
        yield
    finally:
        _QUIET.reset(token)


#: The send errors a producer retries while a new partition's leader settles: counted, not logged.
SETTLING_ERRORS = ("NotLeaderForPartitionError", "LeaderNotAvailableError")

_SETTLING: contextvars.ContextVar[Counter[str] | None] = contextvars.ContextVar(
    "mynapoint_settling_retries", default=None)


class _CountSettlingRetries(logging.Filter):
    """Counts aiokafka's "Got error produce response ..., retrying" warnings for
    `SETTLING_ERRORS` where a caller asked (`counted_settling_retries`), instead of logging each:
    right after topics are made or grown, a producer meets dozens while the leaders settle, and
    every one of those sends then succeeds. Other errors are logged as before."""

    def filter(self, record: logging.LogRecord) -> bool:
        counts = _SETTLING.get()
        if counts is None or not str(record.msg).startswith("Got error produce response"):
            return True
        error = str(record.args[-1]) if isinstance(record.args, tuple) and record.args else ""
        name = next((e for e in SETTLING_ERRORS if e in error), None)
        if name is None:
            return True
        counts[name] += 1
        return False


_SETTLING_FILTER = _CountSettlingRetries()


@contextlib.contextmanager
def counted_settling_retries() -> Iterator[Counter[str]]:
    """Within this block (and tasks started from it: a producer started here), the producer's
    retries for `SETTLING_ERRORS` are counted in the yielded Counter, not logged."""
    logging.getLogger("aiokafka.producer.sender").addFilter(_SETTLING_FILTER)  # once (same)
    counts: Counter[str] = Counter()
    token = _SETTLING.set(counts)
    try:
        yield counts
    finally:
        _SETTLING.reset(token)


async def probe(bootstrap: str, timeout: float = 2.0) -> bool:
    """True if a Kafka broker at `bootstrap` answers a metadata request within `timeout` s."""
    from aiokafka import AIOKafkaClient  # lazy: importing this module stays cheap

    client = AIOKafkaClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=max(int(timeout * 1000), 100),
        connections_max_idle_ms=60_000,
    )
    try:
        with quiet_connect_errors():
            await asyncio.wait_for(client.bootstrap(), timeout)
        return True
    except Exception:  # noqa: BLE001 - any failure means "not ready yet"
        return False
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.close(), timeout)


