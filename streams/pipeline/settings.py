"""What one worker is started with, whatever its engine: the settings (`WorkerSettings`), the
flags of `mynapoint worker` and how each is resolved (the flag, else its environment variable,
else the default of `schemas.settings.ENV`). Each engine adds only its own form of the SASL/TLS
credentials (agents/worker.py for Faust, quix_worker/worker.py for Quix Streams)."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, NoReturn

from schemas import topics
from schemas.journal import JOURNAL_BATCH_MAX
from schemas.settings import (
    ENGINES,
    ENV,
    PROCESSING_GUARANTEES,
    BadSetting,
    aiokafka_security,
    bootstrap_problem,
    env_help,
    from_env,
    is_true,
    usable_app_id,
)


def _default(name: str) -> Any:
    return ENV[name].default


@dataclass
class WorkerSettings:
    bootstrap: str = _default("bootstrap")
    app_id: str = _default("app_id")
    data_dir: str = _default("data_dir")
    partitions: int = topics.DEFAULT_PARTITIONS
    config_path: str | None = None
    web_port: int = int(_default("web_port"))
    web_host: str = _default("web_host")
    metrics_port: int | None = int(_default("metrics_port"))
    metrics_host: str = _default("metrics_host")
    broker_credentials: Any = None
    tansu_compat: bool = False
    # Event-time alignment: how long a silent input may hold back later events (seconds).
    idle_wait: float = float(_default("idle_wait"))
    # The input records one input partition may hold for alignment before it is paused.
    max_held_per_partition: int = int(_default("max_held_per_partition"))
    # The most entries intake puts in one journal record (1: one each, as workers before
    # journal batches wrote and read them).
    journal_batch: int = int(_default("journal_batch"))
    # Faust's table_standby_replicas (Quix Streams has no standbys) and the processing guarantee
    # (README "For SREs").
    standby_replicas: int = int(_default("standby_replicas"))
    processing_guarantee: str = _default("processing_guarantee")
    # Bearer token of the status API (agents/web.py); None: no token asked.
    status_token: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Which engine runs the steps (`schemas.settings.ENGINES`).
    engine: str = _default("engine")
    # Static membership of the consumer group (Kafka's `group.instance.id`): a worker that stops
    # and comes back with the same id within the session timeout keeps its partitions, and the
    # group does not rebalance. None: a dynamic member, which leaves the group when it stops.
    instance_id: str | None = None
    # Seconds without a heartbeat after which the broker drops a worker from the group.
    session_timeout: float = float(_default("session_timeout"))
    # Of the topics the worker makes; None: the cluster's default.replication.factor.
    replication_factor: int | None = None
    # Python's level name for the worker's log (any case).
    loglevel: str = _default("loglevel")
    # The SASL/TLS flags (or their variables), resolved once (`security`).
    security: Security = field(default_factory=lambda: Security(), repr=False)  # a password
    # The same as aiokafka's client keyword arguments (`aiokafka_security`), for the clients the
    # worker makes besides its engine's (its topics' admin client, the status API's) and, in
    # Faust's form, for Faust's (`settings_from_args`): one SSL context for all.
    client_kwargs: dict[str, Any] = field(default_factory=dict, repr=False)  # a password

    @property
    def canonical_url(self) -> str:
        """The URL other workers reach this worker's status API at (`--web-canonical-url`)."""
        url = self.extra.get("canonical_url")
        return str(url) if url else f"http://{self.web_host}:{self.web_port}"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bootstrap", help="Kafka bootstrap servers host:port[,..] " + env_help("bootstrap"))
    p.add_argument("--data-dir", help="where RocksDB tables live " + env_help("data_dir"))
    p.add_argument("--partitions", type=int, help="partitions per topic " + env_help("partitions"))
    p.add_argument("--config", help="rules configuration TOML " + env_help("config"))
    p.add_argument("--web-port", type=int, help="port of the status API (the web server) " + env_help("web_port"))
    p.add_argument("--web-host", help="bind address of the status API " + env_help("web_host"))
    p.add_argument("--web-canonical-url",
                   help="URL other workers reach this one at, for the status API's routing "
                   "(default http://WEB_HOST:WEB_PORT) " + env_help("web_canonical_url"))
    p.add_argument("--status-token",
                   help="bearer token the status API requires; prefer the environment variable "
                   "(a flag shows in ps) " + env_help("status_token"))
    p.add_argument("--metrics-port", type=int, help="Prometheus port, 0 = off " + env_help("metrics_port"))
    p.add_argument("--metrics-host", help="Prometheus bind address " + env_help("metrics_host"))
    p.add_argument("--app-id", help="consumer group and table prefix: letters, digits, '.', "
                   "'_' or '-', as Kafka topic names " + env_help("app_id"))
    p.add_argument("--sasl-mechanism", help="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 " + env_help("sasl_mechanism"))
    p.add_argument("--sasl-username", help=env_help("sasl_username"))
    p.add_argument("--sasl-password", help=env_help("sasl_password"))
    p.add_argument("--ssl-cafile", help="CA file: turns TLS on " + env_help("ssl_cafile"))
    p.add_argument("--tansu-compat", action="store_true", default=None,
                   help="work around the local Tansu broker's end-offset bug " + env_help("tansu_compat"))
    p.add_argument("--loglevel", help="debug, info, warning, error or critical "
                   + env_help("loglevel"))
    p.add_argument("--standby-replicas", type=int,
                   help="standby copies of each table partition kept warm on other workers, "
                   "so a failover recovers little from the changelog; 0 = none "
                   + env_help("standby_replicas"))
    p.add_argument("--processing-guarantee", choices=PROCESSING_GUARANTEES,
                   help="at_least_once (our effectively-once design alone) or exactly_once "
                   "(Kafka transactions on top; Apache Kafka only: Tansu has none) "
                   + env_help("processing_guarantee"))
    p.add_argument("--engine", choices=ENGINES,
                   help="the stream processing engine: faust (Faust agents and tables) or quix "
                   "(Quix Streams; pip install 'mynapoint-stream[quix]'); the same topics, "
                   "outcomes and metrics " + env_help("engine"))
    p.add_argument("--instance-id",
                   help="a name of this worker, unique in its group and kept across restarts "
                   "(Kafka's static membership, group.instance.id): a worker restarted with it "
                   "within --session-timeout keeps its partitions and the others go on without a "
                   "rebalance; letters, digits, '.', '_' and '-' " + env_help("instance_id"))
    p.add_argument("--session-timeout", type=float,
                   help="seconds without a heartbeat after which the broker gives a worker's "
                   f"partitions to the others, {SESSION_TIMEOUT_MIN:g} to {SESSION_TIMEOUT_MAX:g} "
                   "(the broker's group.min/max.session.timeout.ms by default); with "
                   "--instance-id, longer than a restart takes " + env_help("session_timeout"))
    p.add_argument("--replication-factor", type=int,
                   help="replicas of each topic the worker makes (the journal, the claims, the "
                   "changelogs, missing inputs and outputs); existing topics are left as they "
                   "are (default: the cluster's default.replication.factor) "
                   f"(env {ENV['replication_factor'].var})")
    p.add_argument("--idle-wait", type=float,
                   help="seconds a silent input topic may hold back later events (event-time "
                   "alignment; the latency cost for sparse topics) " + env_help("idle_wait"))
    p.add_argument("--max-held-per-partition", type=int,
                   help="input records one input partition may hold waiting for event-time "
                   "alignment before its fetching pauses (the bound on that memory, about "
                   "1.5 KB a record) " + env_help("max_held_per_partition"))
    p.add_argument("--journal-batch", type=int,
                   help=f"the most input events intake journals in one record, 1 to "
                   f"{JOURNAL_BATCH_MAX} (1: one a record, which workers of versions before "
                   "journal batches can read: for upgrading a running group worker by worker) "
                   + env_help("journal_batch"))


#: The session timeouts Apache Kafka accepts by default (group.min.session.timeout.ms and
#: group.max.session.timeout.ms), in seconds.
SESSION_TIMEOUT_MIN = 6.0
SESSION_TIMEOUT_MAX = 1800.0



def resolve(args: argparse.Namespace, name: str) -> Any:
    """The flag if given, else the environment variable if set and not empty, else the default
    (`schemas.settings.from_env`: a variable left blank in a manifest means "not set")."""
    value = getattr(args, name, None)
    if value is not None:
        return value
    return from_env(name)


def _refuse(name: str, meaning: str, value: Any) -> NoReturn:
    """Ends the worker before it starts: "--flag (VARIABLE) <meaning>; got <value>"."""
    flag, var = "--" + name.replace("_", "-"), ENV[name].var
    raise SystemExit(f"mynapoint worker: {flag} ({var}) {meaning}; got {value!r}")


def _number(args: argparse.Namespace, name: str, kind: type, low: float, high: float,
            meaning: str) -> Any:
    """A numeric setting from its flag or environment variable, or a message saying what to set."""
    raw = resolve(args, name)
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        value = None
    if value is None or not low <= value <= high:
        _refuse(name, f"must be {meaning}", raw)
    return value


def _guarantee(args: argparse.Namespace) -> str:
    value = str(resolve(args, "processing_guarantee")).strip().lower()
    if value not in PROCESSING_GUARANTEES:
        _refuse("processing_guarantee", f"must be one of {', '.join(PROCESSING_GUARANTEES)}",
                value)
    return value


def app_id(args: argparse.Namespace) -> str:
    try:
        return usable_app_id(getattr(args, "app_id", None))
    except BadSetting as exc:
        raise SystemExit(f"mynapoint worker: {exc}") from None


def data_dir(args: argparse.Namespace) -> str:
    value = str(resolve(args, "data_dir"))
    if os.path.exists(value) and not os.path.isdir(value):
        _refuse("data_dir", "must be a directory (made if missing), not a file", value)
    return value


def _host(args: argparse.Namespace, name: str) -> str:
    """An address to listen on: one this machine can resolve (binding would fail later, in a
    traceback from the engine's web server)."""
    value = str(resolve(args, name))
    try:
        socket.getaddrinfo(value, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        _refuse(name, f"must be an address or host name of this machine to listen on ({exc})",
                value)
    return value


def loglevel(args: argparse.Namespace) -> str:
    """The log level, checked: one of Python's level names (any case)."""
    value = str(resolve(args, "loglevel"))
    names = [n for n in logging.getLevelNamesMapping() if n != "NOTSET"]
    if value.upper() not in names:
        _refuse("loglevel", f"must be one of {', '.join(sorted(n.lower() for n in names))}",
                value)
    return value


def instance_id(args: argparse.Namespace) -> str | None:
    value = resolve(args, "instance_id")
    if value is None:
        return None
    # What Kafka accepts as a `group.instance.id` (JoinGroupRequest.validateGroupInstanceId): the
    # characters and length of a topic name.
    if (not topics.KAFKA_NAME.fullmatch(value) or len(value) > topics.TOPIC_NAME_MAX
            or value in (".", "..")):
        _refuse("instance_id", "must be 1 to 249 letters, digits, '.', '_' or '-' (not '.' or "
                "'..'), unique to this worker in its group", value)
    return str(value)


def engine(args: argparse.Namespace) -> str:
    value = str(resolve(args, "engine")).strip().lower()
    if value not in ENGINES:
        _refuse("engine", f"must be one of {', '.join(ENGINES)}", value)
    return value


def sasl_login(args: argparse.Namespace) -> tuple[str, str]:
    """The SASL username and password, which `--sasl-mechanism` needs both of."""
    user, password = resolve(args, "sasl_username"), resolve(args, "sasl_password")
    if not user or not password:
        raise SystemExit(
            "mynapoint worker: --sasl-mechanism needs --sasl-username and --sasl-password "
            "(or MYNAPOINT_SASL_USERNAME / MYNAPOINT_SASL_PASSWORD)"
        )
    return user, password


class Security(NamedTuple):
    """The worker's SASL/TLS settings: a SASL `mechanism` with its login, over TLS when `cafile`
    (the CA to trust) is given; TLS alone with `cafile` only; plaintext with neither."""

    mechanism: str | None = None
    username: str | None = None
    password: str | None = None
    cafile: str | None = None


def security(args: argparse.Namespace) -> Security:
    """The worker's SASL/TLS flags, or their variables."""
    mechanism = resolve(args, "sasl_mechanism")
    user, password = sasl_login(args) if mechanism else (None, None)
    return Security(mechanism, user, password, resolve(args, "ssl_cafile") or None)


def load_rules(settings: WorkerSettings) -> Any:
    """The rules of `settings.config_path`, or None after saying on stderr why they cannot be
    read (the worker then exits 2)."""
    from streams.core.config import ConfigError, load_config

    try:
        return load_config(settings.config_path)
    except ConfigError as exc:
        print(f"mynapoint worker: {exc}", file=sys.stderr)
        return None


def settings_from_args(args: argparse.Namespace,
                       credentials: Callable[[dict[str, Any]], Any] | None = None,
                       ) -> WorkerSettings:
    """The worker's settings; `credentials` gives the engine's own form of the SASL/TLS settings
    from aiokafka's (`WorkerSettings.broker_credentials`, for an engine that takes them so)."""
    secured = security(args)
    client_kwargs = aiokafka_security(*secured)
    metrics_port = _number(args, "metrics_port", int, 0, 65535, "a port, 1-65535, or 0 for none")
    bootstrap = resolve(args, "bootstrap")
    why = bootstrap_problem(bootstrap)
    if why is not None:
        raise SystemExit(f"mynapoint worker: {why}")
    return WorkerSettings(
        bootstrap=bootstrap,
        app_id=app_id(args),
        data_dir=data_dir(args),
        partitions=_number(args, "partitions", int, 1, 100_000, "a whole number of partitions"),
        config_path=resolve(args, "config"),
        web_port=_number(args, "web_port", int, 1, 65535, "a port, 1-65535"),
        web_host=_host(args, "web_host"),
        metrics_port=metrics_port or None,
        metrics_host=_host(args, "metrics_host") if metrics_port else resolve(args, "metrics_host"),
        idle_wait=_number(args, "idle_wait", float, 0.0, 86400.0, "seconds, 0 or more"),
        max_held_per_partition=_number(args, "max_held_per_partition", int, 1, 100_000_000,
                                       "a whole number of records, 1 or more"),
        journal_batch=_number(args, "journal_batch", int, 1, JOURNAL_BATCH_MAX,
                              f"a whole number of entries, 1 to {JOURNAL_BATCH_MAX}"),
        standby_replicas=_number(args, "standby_replicas", int, 0, 100, "a count, 0 or more"),
        processing_guarantee=_guarantee(args),
        broker_credentials=credentials(client_kwargs) if credentials is not None else None,
        tansu_compat=is_true(resolve(args, "tansu_compat")),
        status_token=resolve(args, "status_token") or None,
        extra={"canonical_url": url} if (url := resolve(args, "web_canonical_url")) else {},
        engine=engine(args),
        instance_id=instance_id(args),
        loglevel=loglevel(args),
        session_timeout=_number(args, "session_timeout", float, SESSION_TIMEOUT_MIN,
                                SESSION_TIMEOUT_MAX,
                                f"seconds, {SESSION_TIMEOUT_MIN:g} to {SESSION_TIMEOUT_MAX:g}"),
        security=secured,
        client_kwargs=client_kwargs,
        replication_factor=(None if resolve(args, "replication_factor") in (None, "")
                            else _number(args, "replication_factor", int, 1, 32767,
                                         "a whole number of replicas, 1 or more, or unset for "
                                         "the cluster's default.replication.factor")),
    )
