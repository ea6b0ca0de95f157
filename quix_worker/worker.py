"""`mynapoint worker --engine quix`: one worker of the live pipeline on Quix Streams.

The same flags and environment variables as the Faust worker (streams/pipeline/settings.py);
what Quix does not have is said at start-up: no standby replicas (a partition's new owner
recovers its state from the changelog). The status API is served on the web port as the Faust
worker serves it (quix_worker/web.py).
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from typing import Any

from streams.pipeline.settings import (
    WorkerSettings,
    add_arguments,
    load_rules,
    settings_from_args,
)

log = logging.getLogger("mynapoint")



def _quiet_unused_deprecations() -> None:
    """Quix Streams imports its schema registry client's OAuth integration (unused here), whose
    library warns at every start that its httpx module is deprecated: noise in an operator's log.
    That library forces its warnings on ("always") when its module loads, so the filter that
    silences them is added after it."""
    try:
        from authlib.deprecate import AuthlibDeprecationWarning
    except ImportError:
        return
    warnings.filterwarnings("ignore", category=AuthlibDeprecationWarning)


def connection(settings: WorkerSettings) -> Any:
    """The worker's SASL/TLS settings as a Quix `ConnectionConfig`, or None when none is set."""
    mechanism, user, password, cafile = settings.security
    if not mechanism and not cafile:
        return None
    from quixstreams.kafka.configuration import ConnectionConfig

    fields: dict[str, Any] = {"bootstrap_servers": settings.bootstrap}
    if mechanism:
        fields |= {"sasl_mechanism": mechanism, "sasl_username": user, "sasl_password": password,
                   "security_protocol": "sasl_ssl" if cafile else "sasl_plaintext"}
    else:
        fields["security_protocol"] = "ssl"
    if cafile:
        fields["ssl_ca_location"] = cafile
    return ConnectionConfig(**fields)


def _topic_errors() -> tuple[type[Exception], ...]:
    """Quix Streams' errors about the topics it is given (each says what is wrong with one)."""
    from quixstreams.models.topics import exceptions as e

    return (e.TopicPermissionError, e.TopicConfigurationMismatch, e.TopicPartitionsMismatch,
            e.TopicNotFoundError, e.CreateTopicFailure, e.CreateTopicTimeout,
            e.TopicConfigurationError, e.TopicNameLengthExceeded)


def start_worker(settings: WorkerSettings, cfg: Any, loglevel: str = "info",
                 connection_config: Any = None) -> int:
    from prometheus_client import start_http_server

    _quiet_unused_deprecations()
    from clients.offline import start_worker_topics
    from quix_worker import metrics, private
    from quix_worker.app import create_app
    from quix_worker.web import StatusServer
    from schemas import topics

    logging.basicConfig(level=str(loglevel).upper(),
                        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s")
    report = start_worker_topics("quix", settings)
    if report is None:
        return 2
    if settings.standby_replicas:
        log.info("standby replicas: Quix Streams keeps none; a partition's new owner recovers "
                 "its state from the changelog")
    try:
        app = create_app(settings, cfg, connection_config, report.partitions.get(topics.JOURNAL),
                         report.partitions.get(topics.CLAIMS))
    except _topic_errors() as exc:
        # What the start-up checks cannot foresee (the broker's permissions changed in between):
        # Quix Streams' own words, without a traceback.
        print(f"mynapoint worker: Quix Streams could not set up its topics: {exc}. This worker "
              "decided nothing", file=sys.stderr)
        return 2
    StatusServer(
        private.StateReads(app, topics.JOURNAL), cfg, host=settings.web_host,
        port=settings.web_port, canonical_url=settings.canonical_url,
        token=settings.status_token,
        partitions=report.partitions.get(topics.JOURNAL, settings.partitions),
        bootstrap=settings.bootstrap, group=settings.app_id,
        client_kwargs=settings.client_kwargs,
    ).start()
    metrics.register_consumer(private.consumer(app))
    metrics.register_state(lambda: private.state_databases(app))
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.metrics_host)
    log.info("worker started on Quix Streams: group %s, %s partitions per topic",
             settings.app_id, settings.partitions)
    app.run()
    return 0


def run_worker(args: argparse.Namespace) -> int:
    _quiet_unused_deprecations()
    try:
        import quixstreams  # noqa: F401
    except ImportError:
        print("mynapoint worker: --engine quix needs Quix Streams: pip install "
              "'mynapoint-stream[quix]'", file=sys.stderr)
        return 2
    settings = settings_from_args(args)
    cfg = load_rules(settings)
    if cfg is None:
        return 2
    return start_worker(settings, cfg, loglevel=settings.loglevel,
                        connection_config=connection(settings))


def main(argv: list[str] | None = None) -> int:
    """`python -m quix_worker.worker ...`: the same as `mynapoint worker --engine quix ...`."""
    p = argparse.ArgumentParser(prog="mynapoint worker --engine quix", description=__doc__)
    add_arguments(p)
    return run_worker(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
