"""`mynapoint worker`: one Faust worker of the live pipeline, against any Kafka.

Every setting comes from a flag or, failing that, an environment variable, so the same command
serves a laptop, docker-compose and a production deployment.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from schemas.settings import ENV, PROCESSING_GUARANTEES, env_help, from_env, is_true


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bootstrap", help="Kafka bootstrap servers host:port[,..] " + env_help("bootstrap"))
    p.add_argument("--data-dir", help="where RocksDB tables live " + env_help("data_dir"))
    p.add_argument("--partitions", type=int, help="partitions per topic " + env_help("partitions"))
    p.add_argument("--config", help="rules configuration TOML " + env_help("config"))
    p.add_argument("--web-port", type=int, help="Faust web port " + env_help("web_port"))
    p.add_argument("--web-host", help="Faust web bind address " + env_help("web_host"))
    p.add_argument("--web-canonical-url",
                   help="URL other workers reach this one at, for the status API's routing "
                   "(default http://WEB_HOST:WEB_PORT) " + env_help("web_canonical_url"))
    p.add_argument("--status-token",
                   help="bearer token the status API requires; prefer the environment variable "
                   "(a flag shows in ps) " + env_help("status_token"))
    p.add_argument("--metrics-port", type=int, help="Prometheus port, 0 = off " + env_help("metrics_port"))
    p.add_argument("--metrics-host", help="Prometheus bind address " + env_help("metrics_host"))
    p.add_argument("--app-id", help="consumer group and table prefix " + env_help("app_id"))
    p.add_argument("--sasl-mechanism", help="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 " + env_help("sasl_mechanism"))
    p.add_argument("--sasl-username", help=env_help("sasl_username"))
    p.add_argument("--sasl-password", help=env_help("sasl_password"))
    p.add_argument("--ssl-cafile", help="CA file: turns TLS on " + env_help("ssl_cafile"))
    p.add_argument("--tansu-compat", action="store_true", default=None,
                   help="work around the local Tansu broker's end-offset bug " + env_help("tansu_compat"))
    p.add_argument("--loglevel", help=env_help("loglevel"))
    p.add_argument("--standby-replicas", type=int,
                   help="standby copies of each table partition kept warm on other workers, "
                   "so a failover recovers little from the changelog; 0 = none "
                   + env_help("standby_replicas"))
    p.add_argument("--processing-guarantee", choices=PROCESSING_GUARANTEES,
                   help="at_least_once (our effectively-once design alone) or exactly_once "
                   "(Kafka transactions on top; Apache Kafka only: Tansu has none) "
                   + env_help("processing_guarantee"))
    p.add_argument("--idle-wait", type=float,
                   help="seconds a silent input topic may hold back later events (event-time "
                   "alignment; the latency cost for sparse topics) " + env_help("idle_wait"))


def resolve(args: argparse.Namespace, name: str) -> Any:
    """The flag if given, else the environment variable if set and not empty, else the default
    (`schemas.settings.from_env`: a variable left blank in a manifest means "not set")."""
    value = getattr(args, name, None)
    if value is not None:
        return value
    return from_env(name)


def credentials(args: argparse.Namespace) -> Any:
    import ssl

    import faust

    mechanism = resolve(args, "sasl_mechanism")
    cafile = resolve(args, "ssl_cafile")
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    if mechanism:
        user, password = resolve(args, "sasl_username"), resolve(args, "sasl_password")
        if not user or not password:
            raise SystemExit(
                "mynapoint worker: --sasl-mechanism needs --sasl-username and --sasl-password "
                "(or MYNAPOINT_SASL_USERNAME / MYNAPOINT_SASL_PASSWORD)"
            )
        return faust.SASLCredentials(
            username=user, password=password, mechanism=mechanism, ssl_context=context
        )
    if context is not None:
        return context
    return None


def _number(args: argparse.Namespace, name: str, kind: type, low: float, high: float,
            meaning: str) -> Any:
    """A numeric setting from its flag or environment variable, or a message saying what to set."""
    raw = resolve(args, name)
    flag, var = "--" + name.replace("_", "-"), ENV[name][0]
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        value = None
    if value is None or not low <= value <= high:
        raise SystemExit(f"mynapoint worker: {flag} ({var}) must be {meaning}; got {raw!r}")
    return value


def _guarantee(args: argparse.Namespace) -> str:
    value = str(resolve(args, "processing_guarantee")).strip().lower()
    if value not in PROCESSING_GUARANTEES:
        raise SystemExit(f"mynapoint worker: --processing-guarantee "
                         f"({ENV['processing_guarantee'].var}) must be one of "
                         f"{', '.join(PROCESSING_GUARANTEES)}; got {value!r}")
    return value


def settings_from_args(args: argparse.Namespace):
    from agents.settings import WorkerSettings

    metrics_port = _number(args, "metrics_port", int, 0, 65535, "a port, 1-65535, or 0 for none")
    return WorkerSettings(
        bootstrap=resolve(args, "bootstrap"),
        app_id=resolve(args, "app_id"),
        data_dir=resolve(args, "data_dir"),
        partitions=_number(args, "partitions", int, 1, 100_000, "a whole number of partitions"),
        config_path=resolve(args, "config"),
        web_port=_number(args, "web_port", int, 1, 65535, "a port, 1-65535"),
        web_host=resolve(args, "web_host"),
        metrics_port=metrics_port or None,
        metrics_host=resolve(args, "metrics_host"),
        idle_wait=_number(args, "idle_wait", float, 0.0, 86400.0, "seconds, 0 or more"),
        standby_replicas=_number(args, "standby_replicas", int, 0, 100, "a count, 0 or more"),
        processing_guarantee=_guarantee(args),
        broker_credentials=credentials(args),
        tansu_compat=is_true(resolve(args, "tansu_compat")),
        status_token=resolve(args, "status_token") or None,
        extra={"canonical_url": url} if (url := resolve(args, "web_canonical_url")) else {},
    )


def run_worker(args: argparse.Namespace) -> int:
    from streams.core.config import ConfigError, load_config

    settings = settings_from_args(args)
    try:
        cfg = load_config(settings.config_path)
    except ConfigError as exc:
        print(f"mynapoint worker: {exc}", file=sys.stderr)
        return 2
    return start_worker(settings, cfg, loglevel=resolve(args, "loglevel"))


def worker_topics(app_id: str) -> tuple[tuple[str, ...], dict[str, dict[str, str]]]:
    """The topics a worker needs before it starts, and the configs of those that have one.

    The tables' changelogs are among them, made as Faust makes them (compacted): Faust creates
    them itself at start-up, but on Apache Kafka its consumer could then keep a snapshot of the
    cluster's metadata taken before they existed, and the ledger's first table write failed its
    partition check ("the changelog topic ... has 0 partitions") at every restart of the agent,
    until the next metadata refresh minutes later.
    """
    from clients.admin import ALL_TOPICS
    from schemas import topics

    changelogs = tuple(topics.changelog_topic(app_id, t) for t in topics.TABLES)
    return ALL_TOPICS + changelogs, {c: dict(topics.CHANGELOG_CONFIG) for c in changelogs}


def start_worker(settings: Any, cfg: Any, loglevel: str = "info") -> int:
    from agents import metrics
    from agents.app import create_app
    from agents.faust_private import quiet_worker
    from clients import admin

    if settings.tansu_compat:
        from agents.faust_private import patch_for_tansu

        patch_for_tansu()
    names, configs = worker_topics(settings.app_id)
    admin.ensure_topics(settings.bootstrap, settings.partitions, names, configs=configs)
    app = create_app(settings, cfg)
    metrics.register_app(app)
    if settings.metrics_port:
        metrics.serve(settings.metrics_port, settings.metrics_host)
    quiet_worker(app, loglevel).execute_from_commandline()
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m agents.worker ...`: the same as `mynapoint worker ...`."""
    p = argparse.ArgumentParser(prog="mynapoint worker", description=__doc__)
    add_arguments(p)
    return run_worker(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
