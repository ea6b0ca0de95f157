"""`mynapoint produce`: send a JSONL file of input events to their Kafka topics.

Each line is validated with the contract's decoder (`schemas.codec.decode_event`); a valid event
goes, as the original line bytes (without the newline), to the input topic of its `type`
(`schemas.topics.TOPIC_BY_TYPE`) with key = `person_id` (UTF-8), so the default partitioner keeps a
person's events in order on one partition. Bad lines are not sent: each is reported with its line
number and reason, and the rest of the file still goes.

Send order. By default the valid events go in event-time order, whatever the file's order:
sorted by `occurred_at` as an absolute instant (the epoch seconds the pipeline's aligner compares,
from the same decoder), ties in the topic order of `schemas.topics.INPUT_TOPICS` (the order of the
README's topic table, the aligner's tie-break), then in file order (the sort is stable). The
pipeline merges the input topics per partition by `occurred_at` across people, so every topic's
records must reach it in time order across people (README, "Ordering across topics"); a file
ordered per person (an export per person, a bulk load) would otherwise be decided mostly late and
wrongly. `ProduceReport.moved` says how many events were out of that order: the fewest lines that
must be moved to turn the file's order into the send order (events minus the longest run of
events already in send order, not necessarily adjacent). Bad lines are reported, in file order,
while the file is read, before anything is sent.

Sorting holds the whole file in memory: about 0.3 KB per line plus the line itself (measured with
tracemalloc on the demo history, 217-byte lines: 545 bytes per line at the peak of the sort), so
some 55 GB for 100 million such lines. With `keep_order=True` (`--keep-order`) the lines are sent
in file order as they are read, in bounded memory: for a file already in time order across people,
or one too large to sort here (sort it beforehand).

    report = produce_file("events.jsonl", "127.0.0.1:9092")          # blocking
    report = await produce_lines(lines, bootstrap, dry_run=True)      # from async code

The producer uses acks=all and lingers to batch. Where the cluster gives out producer ids
(Apache Kafka; not Tansu, which answers InitProducerId with an error) it is idempotent: a send
retried after a broker was lost is then written once. Without, such retries wrote records twice
(seen on three Apache Kafka brokers with one killed during a run: 104 of 205,625 lines), and the
pipeline answers each second copy with a `duplicate_event` or `duplicate_transaction` decision.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.codec import BadInput, decode_event, event_lines
from schemas.events import TYPE_NAMES
from schemas.settings import ENV, bootstrap_problem, from_env
from schemas.topics import DEFAULT_PARTITIONS, INPUT_TOPICS, TOPIC_BY_TYPE

log = logging.getLogger(__name__)

_FLUSH_EVERY = 10_000  # sends awaited per chunk: bounds memory on large files


def default_bootstrap() -> str:
    """`$MYNAPOINT_BOOTSTRAP`, else 127.0.0.1:9092."""
    return from_env("bootstrap") or ""


class ProduceError(RuntimeError):
    """The events could not be sent (broker unreachable, delivery failed)."""


@dataclass(frozen=True)
class BadLine:
    lineno: int
    reason: str
    message: str


@dataclass
class ProduceReport:
    lines: int = 0
    sent: Counter[str] = field(default_factory=Counter)
    """Events acknowledged by the broker per topic (in a dry run: the events that would be sent)."""
    bad: list[BadLine] = field(default_factory=list)
    dry_run: bool = False
    moved: int | None = None
    """Events moved to put the file in event-time order (`moved_count`); None: file order kept."""
    idempotent: bool = False
    """Whether the events were sent by an idempotent producer (`gives_producer_ids`)."""
    retried: Counter[str] = field(default_factory=Counter)
    """Sends the producer retried while a partition's leader settled, by error
    (`clients.connect.counted_settling_retries`); each such send then succeeded or failed the
    run."""

    @property
    def total_sent(self) -> int:
        return sum(self.sent.values())


@dataclass(frozen=True, slots=True)
class Planned:
    topic: str
    key: bytes
    value: bytes
    occurred_at: float = 0.0
    """Epoch seconds of the event's `occurred_at`, as the aligner compares it."""


#: A topic's place in the tie-break of equal `occurred_at`: the order of `INPUT_TOPICS`.
TOPIC_RANK: dict[str, int] = {topic: rank for rank, topic in enumerate(INPUT_TOPICS)}


def plan(raw: bytes) -> Planned:
    """Where one line goes; raises `BadInput` if the line is not a valid event."""
    value = raw.rstrip(b"\r\n")
    event = decode_event(value)
    topic = TOPIC_BY_TYPE[TYPE_NAMES[type(event)]]
    return Planned(topic, event.person_id.encode("utf-8"), value, event.occurred_at.timestamp())


def _send_key(item: tuple[int, Planned]) -> tuple[float, int]:
    planned = item[1]
    return planned.occurred_at, TOPIC_RANK[planned.topic]


def event_time_order(numbered: Iterable[tuple[int, Planned]]) -> tuple[list[tuple[int, Planned]], int]:
    """(line number, planned event) pairs in send order: by `occurred_at`, ties in topic order, then
    in the given (file) order; and how many were moved (`moved_count`). Reads all of `numbered`."""
    items = list(numbered)
    items.sort(key=_send_key)  # stable: equal keys keep file order
    return items, moved_count([lineno for lineno, _ in items])


def in_send_order(lines: Iterable[bytes]) -> list[bytes]:
    """Event lines in the order `produce` sends them (`event_time_order`), as they were given;
    raises `BadInput` on a line that is not a valid event."""
    given = list(lines)
    ordered, _ = event_time_order(enumerate(plan(line) for line in given))
    return [given[i] for i, _ in ordered]


def moved_count(order: Sequence[int]) -> int:
    """The fewest elements to move to turn the ascending order into `order` (distinct numbers):
    len(order) minus its longest increasing subsequence. 0 for a file already in send order; 1
    when one line sits elsewhere, however far."""
    tails: list[int] = []
    for x in order:
        i = bisect_left(tails, x)
        if i == len(tails):
            tails.append(x)
        else:
            tails[i] = x
    return len(order) - len(tails)


async def produce_lines(
    lines: Iterable[bytes],
    bootstrap: str | None = None,
    *,
    partitions: int = DEFAULT_PARTITIONS,
    dry_run: bool = False,
    keep_order: bool = False,
    create_topics: bool = True,
    on_bad: Callable[[BadLine], None] | None = None,
    linger_ms: int = 20,
    timeout: float = 30.0,
    **client_kwargs: Any,
) -> ProduceReport:
    """Validates and sends `lines` (bytes, without or with their newline).

    Sends in event-time order (module docstring), reading all of `lines` first; `keep_order`
    sends in the given order as the lines are read. Bad lines are reported through `on_bad` in
    line order as they are read. Connects before reading any line, so an unreachable broker fails
    fast (`ProduceError`).
    `create_topics` creates the missing input topics with `partitions` partitions first.
    `client_kwargs` (SASL/TLS settings, ...) go to `AIOKafkaProducer` and the admin client.
    """
    report = ProduceReport(dry_run=dry_run)

    def bad(lineno: int, exc: BadInput) -> None:
        entry = BadLine(lineno, exc.reason, exc.message)
        report.bad.append(entry)
        if on_bad is not None:
            on_bad(entry)

    def planned() -> Iterator[tuple[int, Planned]]:
        for lineno, raw in enumerate(lines, start=1):
            report.lines = lineno
            try:
                yield lineno, plan(raw)
            except BadInput as exc:
                bad(lineno, exc)

    def in_send_order() -> Iterable[tuple[int, Planned]]:
        if keep_order:
            return planned()
        ordered, report.moved = event_time_order(planned())
        return ordered

    if dry_run:
        for _, p in in_send_order():
            report.sent[p.topic] += 1
        return report

    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    from clients.connect import counted_settling_retries, quiet_connect_errors

    bootstrap = bootstrap or default_bootstrap()
    try:
        with quiet_connect_errors():
            report.idempotent = await gives_producer_ids(bootstrap, timeout, **client_kwargs)
    except (TimeoutError, KafkaError, OSError) as exc:
        raise ProduceError(_unreachable(bootstrap, exc)) from None
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=linger_ms,
        enable_idempotence=report.idempotent,
        request_timeout_ms=int(timeout * 1000),
        **client_kwargs,
    )
    try:
        # The producer's sender task starts here: its settling retries are counted in the report.
        with quiet_connect_errors(), counted_settling_retries() as retried:
            await asyncio.wait_for(producer.start(), timeout)
    except (TimeoutError, KafkaError, OSError) as exc:
        await _quiet_stop(producer)
        raise ProduceError(_unreachable(bootstrap, exc)) from None
    report.retried = retried
    try:
        if create_topics:
            from clients.admin import TopicError, ensure_topics_async

            try:
                await ensure_topics_async(
                    bootstrap, partitions, INPUT_TOPICS, timeout=timeout, **client_kwargs
                )
            except (TopicError, KafkaError, OSError) as exc:
                raise ProduceError(
                    f"cannot create the input topics on {bootstrap}: {exc}"
                ) from None
        pending: list[tuple[str, asyncio.Future[Any]]] = []
        for lineno, p in in_send_order():
            try:
                fut = await producer.send(p.topic, p.value, key=p.key)
            except KafkaError as exc:
                raise ProduceError(f"cannot send line {lineno} to {p.topic}: {exc}") from None
            pending.append((p.topic, fut))
            if len(pending) >= _FLUSH_EVERY:
                await _settle(pending, report, timeout)
        await _settle(pending, report, timeout)
    finally:
        await _quiet_stop(producer)
    return report


async def gives_producer_ids(bootstrap: str, timeout: float, **client_kwargs: Any) -> bool:
    """Whether the cluster at `bootstrap` gives this client a producer id (InitProducerId, what
    an idempotent producer asks before its first send): Apache Kafka does, where the client may
    write (an ACL); Tansu answers with an error. A retriable error (a fresh cluster answers
    "load in progress" at first) is asked again until `timeout`, then taken for no. Raises what
    connecting raises."""
    from aiokafka import AIOKafkaClient
    from aiokafka.errors import for_code
    from aiokafka.protocol.transaction import InitProducerIdRequest

    from clients.admin import any_broker

    deadline = time.monotonic() + timeout
    client = AIOKafkaClient(bootstrap_servers=bootstrap,
                            request_timeout_ms=max(int(timeout * 1000), 1000), **client_kwargs)
    try:
        await asyncio.wait_for(client.bootstrap(), timeout)
        request = InitProducerIdRequest(None, 60_000)  # type: ignore[arg-type]
        while True:
            response = await any_broker(lambda: client.send(client.get_random_node(), request),
                                        deadline)
            code = int(response.error_code)
            if code == 0:
                return True
            if not for_code(code).retriable:
                return False
            if time.monotonic() >= deadline:
                log.warning("the cluster at %s did not give a producer id in %g s (%s): the "
                            "events are sent by a producer that is not idempotent", bootstrap,
                            timeout, for_code(code).__name__)
                return False
            await asyncio.sleep(0.1)
    finally:
        await client.close()


async def _settle(
    pending: list[tuple[str, asyncio.Future[Any]]], report: ProduceReport, timeout: float
) -> None:
    if not pending:
        return
    results = await asyncio.gather(*(f for _, f in pending), return_exceptions=True)
    failed: list[BaseException] = []
    for (topic, _), result in zip(pending, results, strict=True):
        if isinstance(result, BaseException):
            failed.append(result)
        else:
            report.sent[topic] += 1
    pending.clear()
    if failed:
        raise ProduceError(
            f"{len(failed)} events were not acknowledged by the broker (first error: {failed[0]!r})"
        )


async def _quiet_stop(producer: Any) -> None:
    try:
        await asyncio.wait_for(producer.stop(), 10)
    except Exception:  # noqa: BLE001 - nothing more to do on the way out
        pass


def _unreachable(bootstrap: str, exc: BaseException) -> str:
    from clients.connect import failure_text

    detail = failure_text(exc)
    security = ", ".join(ENV[name].var for name in
                         ("sasl_mechanism", "sasl_username", "sasl_password", "ssl_cafile"))
    return (
        f"cannot reach a Kafka broker at {bootstrap} ({detail}). Start a local one with "
        f"`mynapoint broker`, or pass --bootstrap HOST:PORT / set {ENV['bootstrap'].var}; on a "
        f"secured cluster, set {security}"
    )


#: How compressed files begin (their magic numbers): such a file is refused, not sent as lines
#: of garbage, each one a bad line.
COMPRESSED = {b"\x1f\x8b": ("gzip", "zcat"), b"\x28\xb5\x2f\xfd": ("zstd", "zstdcat"),
              b"BZh": ("bzip2", "bzcat"), b"\xfd7zXZ\x00": ("xz", "xzcat"),
              b"PK\x03\x04": ("zip", "unzip -p")}


def compression_problem(first: bytes, name: str) -> str | None:
    """What to do with a file whose first bytes are `first`, if it is compressed; else None."""
    for magic, (kind, cat) in COMPRESSED.items():
        if first.startswith(magic):
            how = ("in the pipe, before `mynapoint produce -`" if name == "<stdin>"
                   else f"e.g. `{cat} {name} | mynapoint produce -`")
            return (f"{name} is {kind}-compressed, not JSON Lines: decompress it first, {how}; "
                    "nothing was sent")
    return None


def produce_file(path: str | Path, bootstrap: str | None = None, **kwargs: Any) -> ProduceReport:
    """Blocking: `produce_lines` over the lines of a file (`"-"`: standard input). A compressed
    file (`COMPRESSED`) raises `ProduceError` before anything is read or sent."""
    from clients.connect import run_blocking

    stdin = str(path) == "-"
    with contextlib.nullcontext(sys.stdin.buffer) if stdin else open(path, "rb") as stream:
        peek = getattr(stream, "peek", None)
        why = compression_problem(peek(8)[:8] if peek else b"", "<stdin>" if stdin else str(path))
        if why is not None:
            raise ProduceError(why)
        return run_blocking(produce_lines(event_lines(stream), bootstrap, **kwargs))


def order_summary(report: ProduceReport) -> str:
    """One line on the send order, for the command's report."""
    if report.moved is None:
        return "order: the file's (--keep-order)"
    events = report.lines - len(report.bad)
    return (
        f"order: event time (occurred_at, then topic order): {report.moved} of {events} events "
        f"moved from their place in the file"
    )


def cmd_produce(args: argparse.Namespace) -> int:
    """`mynapoint produce FILE.jsonl [--bootstrap] [--partitions] [--keep-order] [--dry-run]
    [--strict]`."""
    from clients.history import client_kwargs_from_env

    name = "<stdin>" if args.file == "-" else args.file
    bootstrap = args.bootstrap or default_bootstrap()
    why = None if args.dry_run else bootstrap_problem(bootstrap)
    if why is not None:  # said before the file is read
        print(f"mynapoint produce: {why}", file=sys.stderr)
        return 2

    def on_bad(entry: BadLine) -> None:
        print(f"{name} line {entry.lineno}: {entry.reason}: {entry.message}", file=sys.stderr)

    try:
        report = produce_file(
            args.file,
            bootstrap,
            partitions=args.partitions,
            dry_run=args.dry_run,
            keep_order=args.keep_order,
            on_bad=on_bad,
            **client_kwargs_from_env(),
        )
    except OSError as exc:
        print(f"mynapoint produce: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except ProduceError as exc:
        print(f"mynapoint produce: {exc}", file=sys.stderr)
        return 2
    verb = "would send" if report.dry_run else f"sent to {bootstrap}"
    print(f"mynapoint produce: {order_summary(report)}", file=sys.stderr)
    for topic in sorted(report.sent):
        print(f"  {topic}: {report.sent[topic]}", file=sys.stderr)
    print(
        f"mynapoint produce: {report.lines} lines, {verb}: {report.total_sent} events, "
        f"bad lines: {len(report.bad)}",
        file=sys.stderr,
    )
    if report.retried:
        print(f"mynapoint produce: {retries_summary(report)}", file=sys.stderr)
    if report.bad and args.strict:
        return 1
    return 0


def retries_summary(report: ProduceReport) -> str:
    """One line on the sends retried while partitions' leaders settled (none: "")."""
    if not report.retried:
        return ""
    errors = ", ".join(f"{n} after {e}" for e, n in sorted(report.retried.items()))
    return (f"{report.retried.total()} sends were retried while new partitions' leaders "
            f"settled ({errors}); every event counted above was acknowledged")
