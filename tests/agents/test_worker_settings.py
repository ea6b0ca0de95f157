"""`mynapoint worker` settings from flags and environment (agents/worker.py): numbers out of range
are refused with the flag, the variable and what to set, before Faust sees them."""

from __future__ import annotations

import argparse

import pytest

from agents.worker import add_arguments, settings_from_args


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(list(argv))


def test_defaults_and_flags():
    s = settings_from_args(parse("--web-port", "7001", "--metrics-port", "0", "--idle-wait", "0.5"))
    assert (s.web_port, s.metrics_port, s.idle_wait, s.partitions) == (7001, None, 0.5, 4)


def test_environment_is_read(monkeypatch):
    monkeypatch.setenv("MYNAPOINT_WEB_PORT", "7002")
    monkeypatch.setenv("MYNAPOINT_PARTITIONS", "8")
    s = settings_from_args(parse())
    assert (s.web_port, s.partitions) == (7002, 8)


@pytest.mark.parametrize(("argv", "said"), [
    (["--web-port", "0"], "--web-port (MYNAPOINT_WEB_PORT) must be a port, 1-65535; got 0"),
    (["--web-port", "70000"], "--web-port (MYNAPOINT_WEB_PORT) must be a port, 1-65535"),
    (["--metrics-port", "-1"], "--metrics-port (MYNAPOINT_METRICS_PORT) must be a port"),
    (["--partitions", "0"], "--partitions (MYNAPOINT_PARTITIONS) must be a whole number"),
    (["--idle-wait", "-2"], "--idle-wait (MYNAPOINT_IDLE_WAIT) must be seconds, 0 or more"),
])
def test_out_of_range_is_refused_saying_what_to_set(argv, said):
    with pytest.raises(SystemExit) as caught:
        settings_from_args(parse(*argv))
    assert said in str(caught.value)


def test_a_bad_environment_value_is_named(monkeypatch):
    monkeypatch.setenv("MYNAPOINT_IDLE_WAIT", "soon")
    with pytest.raises(SystemExit) as caught:
        settings_from_args(parse())
    assert "MYNAPOINT_IDLE_WAIT" in str(caught.value) and "'soon'" in str(caught.value)
