"""Fixtures of the Faust adapter's unit tests."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest


@pytest.fixture
def app_holding() -> Callable[..., tuple[Any, SimpleNamespace]]:
    """`app_holding(error=None, **attrs)`: a stand-in for a Faust app (with `attrs`) whose
    consumer's aiokafka group coordinator holds `error` for the user, and that coordinator (set
    its `_pending_exception` to hold another). What `agents.faust_private.fenced` reads."""

    def make(error: BaseException | None = None, **attrs: Any) -> tuple[Any, SimpleNamespace]:
        coordinator = SimpleNamespace(_pending_exception=error)
        thread = SimpleNamespace(_consumer=SimpleNamespace(_coordinator=coordinator))
        return SimpleNamespace(_consumer=SimpleNamespace(_thread=thread), **attrs), coordinator

    return make
