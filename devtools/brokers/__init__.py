"""Local brokers on loopback for development and the broker tests: Tansu (`tansu.py`, the
embedded default: memory storage, starts at once) and Apache Kafka (`kafka.py`, the broker our
users run: KRaft, from Apache Kafka's own jars). Both are a `BrokerProcess` (`process.py`)."""

from __future__ import annotations

from typing import Any

from devtools.brokers.process import BrokerError, BrokerNotInstalled, BrokerProcess

ENGINES = ("tansu", "kafka")
DEFAULT_ENGINE = "tansu"

__all__ = ["DEFAULT_ENGINE", "ENGINES", "BrokerError", "BrokerNotInstalled", "BrokerProcess",
           "make_broker"]


def make_broker(engine: str = DEFAULT_ENGINE, **kwargs: Any) -> BrokerProcess:
    """A (not yet started) broker of `engine`; keyword arguments as its class takes them."""
    if engine == "tansu":
        from devtools.brokers.tansu import TansuBroker

        kwargs.pop("data_dir", None)  # memory storage only
        return TansuBroker(**kwargs)
    if engine == "kafka":
        from devtools.brokers.kafka import KafkaBroker

        return KafkaBroker(**kwargs)
    raise BrokerError(f"unknown broker engine {engine!r}: use one of {', '.join(ENGINES)}")
