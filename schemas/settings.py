"""The deployment settings every `mynapoint` command shares: environment variable names and
defaults, in one table (README "For SREs" lists them; `mynapoint worker --help` prints them).

A flag given on the command line wins; otherwise the environment variable; otherwise the default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, NamedTuple

from schemas.journal import JOURNAL_BATCH_MAX
from schemas.topics import DEFAULT_PARTITIONS


class Setting(NamedTuple):
    var: str
    default: str | None


ENV: dict[str, Setting] = {
    "bootstrap": Setting("MYNAPOINT_BOOTSTRAP", "127.0.0.1:9092"),
    "data_dir": Setting("MYNAPOINT_DATA_DIR", "var/worker"),
    "partitions": Setting("MYNAPOINT_PARTITIONS", str(DEFAULT_PARTITIONS)),
    "config": Setting("MYNAPOINT_CONFIG", None),
    "web_port": Setting("MYNAPOINT_WEB_PORT", "6066"),
    "web_host": Setting("MYNAPOINT_WEB_HOST", "127.0.0.1"),
    "web_canonical_url": Setting("MYNAPOINT_WEB_CANONICAL_URL", None),
    "status_token": Setting("MYNAPOINT_STATUS_TOKEN", None),
    "metrics_port": Setting("MYNAPOINT_METRICS_PORT", "9108"),
    "metrics_host": Setting("MYNAPOINT_METRICS_HOST", "127.0.0.1"),
    "app_id": Setting("MYNAPOINT_APP_ID", "mynapoint"),
    "sasl_mechanism": Setting("MYNAPOINT_SASL_MECHANISM", None),
    "sasl_username": Setting("MYNAPOINT_SASL_USERNAME", None),
    "sasl_password": Setting("MYNAPOINT_SASL_PASSWORD", None),
    "ssl_cafile": Setting("MYNAPOINT_SSL_CAFILE", None),
    "tansu_compat": Setting("MYNAPOINT_TANSU_COMPAT", "0"),
    "loglevel": Setting("MYNAPOINT_LOGLEVEL", "info"),
    "idle_wait": Setting("MYNAPOINT_IDLE_WAIT", "3.0"),
    "max_held_per_partition": Setting("MYNAPOINT_MAX_HELD_PER_PARTITION", "2000"),
    "journal_batch": Setting("MYNAPOINT_JOURNAL_BATCH", str(JOURNAL_BATCH_MAX)),
    "standby_replicas": Setting("MYNAPOINT_STANDBY_REPLICAS", "1"),
    "processing_guarantee": Setting("MYNAPOINT_PROCESSING_GUARANTEE", "at_least_once"),
    "engine": Setting("MYNAPOINT_ENGINE", "faust"),
    "instance_id": Setting("MYNAPOINT_INSTANCE_ID", None),
    "session_timeout": Setting("MYNAPOINT_SESSION_TIMEOUT", "10"),
    # None: the cluster's own default.replication.factor.
    "replication_factor": Setting("MYNAPOINT_REPLICATION_FACTOR", None),
}

#: What `--processing-guarantee` takes (Faust's `processing_guarantee`, Quix Streams' too).
PROCESSING_GUARANTEES = ("at_least_once", "exactly_once")

#: The module of each engine's worker (`python -m <module>`, or `mynapoint worker --engine`), each
#: with a `run_worker(args)`: the stream processing engine that runs the pipeline's steps.
WORKER_MODULES = {"faust": "agents.worker", "quix": "quix_worker.worker"}
#: What `mynapoint worker --engine` takes (Faust, the default; Quix Streams).
ENGINES = tuple(WORKER_MODULES)


def from_env(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The setting's environment variable if set and not empty, else its default."""
    var, default = ENV[name]
    env = os.environ if environ is None else environ
    return env.get(var) or default


def flag_or_env(name: str, flag: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The flag's value if given, else the setting's environment variable if set and not empty;
    never the default: for what a command must be told (which broker the auditor reads)."""
    env = os.environ if environ is None else environ
    return flag or env.get(ENV[name].var) or None


#: What a command that reads a broker says when it was told none.
NO_BROKER = f"say which broker: --bootstrap HOST:PORT (or {ENV['bootstrap'].var})"


def env_help(name: str) -> str:
    """"(env VAR; default X)" for a flag's help text."""
    var, default = ENV[name]
    return f"(env {var}; default {default})"


def is_true(value: object) -> bool:
    """How every boolean setting reads: 1, true, yes or on (any case)."""
    return value is True or str(value).strip().lower() in {"1", "true", "yes", "on"}


def aiokafka_security(mechanism: str | None, username: str | None, password: str | None,
                      cafile: str | None) -> dict[str, Any]:
    """SASL/TLS settings as aiokafka's clients take them (keyword arguments): SASL with
    `mechanism`, over TLS when `cafile` (the CA to trust) is given; TLS alone with `cafile` only;
    nothing (plaintext) with neither. The one place that says how: the worker's own clients and
    every command that reads or writes the topics connect this way."""
    kwargs: dict[str, Any] = {}
    if cafile:
        import ssl

        kwargs["ssl_context"] = ssl.create_default_context(cafile=cafile)
    if mechanism:
        kwargs["sasl_mechanism"] = mechanism
        kwargs["sasl_plain_username"] = username
        kwargs["sasl_plain_password"] = password
        kwargs["security_protocol"] = "SASL_SSL" if cafile else "SASL_PLAINTEXT"
    elif cafile:
        kwargs["security_protocol"] = "SSL"
    return kwargs
