"""`mynapoint worker`: one Faust worker of the live pipeline, against any Kafka.

Every setting comes from a flag or, failing that, an environment variable, so the same command
serves a laptop, docker-compose and a production deployment.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from streams.pipeline.settings import add_arguments, load_rules, resolve
from streams.pipeline.settings import settings_from_args as neutral_settings

__all__ = ["add_arguments", "resolve", "run_worker", "settings_from_args", "start_worker"]


def credentials(client_kwargs: dict[str, Any]) -> Any:
    """The SASL/TLS settings as Faust takes them, from aiokafka's form (the same SSL context)."""
    import faust

    context = client_kwargs.get("ssl_context")
    if "sasl_mechanism" in client_kwargs:
        return faust.SASLCredentials(
            username=client_kwargs["sasl_plain_username"],
            password=client_kwargs["sasl_plain_password"],
            mechanism=client_kwargs["sasl_mechanism"], ssl_context=context)
    return context


def settings_from_args(args: argparse.Namespace) -> Any:
    """The worker's settings, with the SASL/TLS flags as Faust takes them."""
    return neutral_settings(args, credentials)


def run_worker(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if settings.engine != "faust":
        print(f"mynapoint worker: this is the Faust worker; for --engine {settings.engine} run "
              f"`mynapoint worker --engine {settings.engine}`", file=sys.stderr)
        return 2
    cfg = load_rules(settings)
    if cfg is None:
        return 2
    return start_worker(settings, cfg, loglevel=settings.loglevel)


def start_worker(settings: Any, cfg: Any, loglevel: str = "info") -> int:
    from agents import metrics
    from agents.app import create_app
    from agents.faust_private import quiet_worker
    from clients.offline import start_worker_topics
    from schemas import topics

    if settings.tansu_compat:
        from agents.faust_private import patch_for_tansu

        patch_for_tansu()
    report = start_worker_topics("faust", settings)
    if report is None:
        return 2
    # The topics Faust declares itself get the replication factor the others got.
    settings = dataclasses.replace(settings, replication_factor=report.replication_factor)
    app = create_app(settings, cfg, report.partitions.get(topics.JOURNAL),
                     report.partitions.get(topics.CLAIMS))
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
