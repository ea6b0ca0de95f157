"""The deployment settings every `mynapoint` command shares: environment variable names and
defaults, in one table (README "For SREs" lists them; `mynapoint worker --help` prints them).

A flag given on the command line wins; otherwise the environment variable; otherwise the default.
"""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, TypeVar

from schemas.journal import JOURNAL_BATCH_MAX
from schemas.topics import DEFAULT_PARTITIONS, app_id_problem

N = TypeVar("N", int, float)


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


def bootstrap_problem(bootstrap: str) -> str | None:
    """Why `bootstrap` is not a list of Kafka brokers as the clients take it, or None: HOST:PORT
    entries separated by commas, a port 1-65535, an IPv6 address in brackets when a port
    follows it, a HOST alone meaning port 9092 (as aiokafka reads it). aiokafka itself raises
    ValueError or OverflowError from inside its connect on a bad port, which was a traceback;
    a scheme or an empty entry made it look for a host of that name."""
    entries = [e.strip() for e in bootstrap.split(",")]
    for entry in entries:
        it = f"{entry!r} " if len(entries) > 1 else "it "
        why = None
        if not entry:
            why = "an entry is empty (a comma too many?)"
        elif "://" in entry or "/" in entry:
            why = f"{it}is not HOST:PORT (no scheme such as PLAINTEXT:// or http://, no path)"
        elif any(c.isspace() for c in entry):
            why = f"{it}has a space in it"
        elif entry.startswith("["):
            host, _, rest = entry[1:].partition("]")
            if not host or (rest and not (rest.startswith(":") and _port_ok(rest[1:]))):
                why = f"{it}is not [IPv6]:PORT with a port 1-65535"
        elif ":" in entry and not _ipv6(entry):
            host, _, port = entry.rpartition(":")
            if not host or not _port_ok(port):
                why = f"{it}is not HOST:PORT with a port 1-65535"
        if why is not None:
            return (f"the Kafka brokers {bootstrap!r} cannot be used: {why}. Give HOST:PORT, or "
                    f"several separated by commas (--bootstrap, or {ENV['bootstrap'].var})")
    return None


def _port_ok(text: str) -> bool:
    return text.isascii() and text.isdigit() and 1 <= int(text) <= 65535


def _ipv6(text: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6, text)
    except (OSError, ValueError):
        return False
    return True


#: What a command that reads a broker says when it was told none.
NO_BROKER = f"say which broker: --bootstrap HOST:PORT (or {ENV['bootstrap'].var})"


class BadSetting(ValueError):
    """A setting a command cannot use; the message says what to give."""


def usable_bootstrap(bootstrap: str | None) -> str:
    """`bootstrap` (a command's --bootstrap, else its environment variable) if a command can use
    it; else raises `BadSetting`: none given (`NO_BROKER`), or not a list of brokers
    (`bootstrap_problem`)."""
    if not bootstrap:
        raise BadSetting(NO_BROKER)
    why = bootstrap_problem(bootstrap)
    if why is not None:
        raise BadSetting(why)
    return bootstrap


def usable_app_id(flag: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The app a command works on (--app-id, else its environment variable, else the default),
    if the workers could have named their topics after it (`app_id_problem`, as the worker
    checks its own); else raises `BadSetting`. A wrong app id found no topics and said so; one
    no worker can have leaves nothing to look for."""
    value = flag if flag is not None else from_env("app_id", environ) or ""
    why = app_id_problem(value)
    if why is not None:
        raise BadSetting(f"--app-id ({ENV['app_id'].var}) {why}; got {value!r}")
    return value


def env_help(name: str) -> str:
    """"(env VAR; default X)" for a flag's help text."""
    var, default = ENV[name]
    return f"(env {var}; default {default})"


def arg_type(kind: Callable[[str], N], ok: Callable[[N], bool],
             meaning: str) -> Callable[[str], N]:
    """An argparse `type` for a number: `kind` of the text, if `ok`; else a usage error (exit 2)
    that says what to give ("must be <meaning>; got '...'"), not a traceback or a run on a value
    that means nothing. A NaN is never `ok`: every comparison with it is false."""

    def convert(text: str) -> N:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {meaning}; got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {meaning}; got {text!r}")
        return value

    return convert


#: A count of things (partitions, people): 1 or more.
COUNT = arg_type(int, lambda n: n >= 1, "a whole number, 1 or more")
#: How many to show (examples, rows): 0 or more.
HOW_MANY = arg_type(int, lambda n: n >= 0, "a whole number, 0 or more")
#: A timeout or a wait, in seconds.
SECONDS = arg_type(float, lambda s: 0 < s < float("inf"), "a number of seconds above 0")
#: A share of something: 0 to 1.
SHARE = arg_type(float, lambda x: 0 <= x <= 1, "a share from 0 to 1")


def port_type(zero: str | None) -> Callable[[str], int | None]:
    """An argparse `type` for a port: 1-65535, or 0 where `zero` says what 0 means ("a free
    one", "no metrics"; None: 0 is refused), which gives None."""
    low = 0 if zero else 1
    check = arg_type(int, lambda p: low <= p <= 65535,
                     "a port, 1-65535" + (f", or 0 for {zero}" if zero else ""))

    def port(text: str) -> int | None:
        return check(text) or None

    return port


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
