"""Local brokers on loopback for development and the broker tests: Tansu (`tansu.py`, the
embedded default: memory storage, starts at once) and Apache Kafka (`kafka.py`, the broker our
users run: KRaft, from Apache Kafka's own jars). Both are a `BrokerProcess` (`process.py`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from devtools.brokers.process import BrokerError, BrokerNotInstalled, BrokerProcess

ENGINES = ("tansu", "kafka")
DEFAULT_ENGINE = "tansu"

__all__ = ["DEFAULT_ENGINE", "ENGINES", "BrokerError", "BrokerNotInstalled", "BrokerProcess",
           "make_broker", "port_type"]


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


def port_type(zero: str | None) -> Callable[[str], int | None]:
    """An argparse `type` for a port option of the local tools: 1-65535, or 0 when `zero` says
    what 0 means ("a free one", "off"; None: 0 is refused), which gives None. A port out of range
    is a usage error, not a traceback from `bind`."""
    meaning = "a port, 1-65535" + (f", or 0 for {zero}" if zero else "")

    def port(text: str) -> int | None:
        try:
            value = int(text)
        except ValueError:
            value = -1
        if value == 0 and zero:
            return None
        if not 1 <= value <= 65535:
            raise argparse.ArgumentTypeError(f"must be {meaning}; got {text!r}")
        return value

    return port
