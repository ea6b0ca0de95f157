"""A worker does not start where the app's state lives in the other engine's changelogs (after a
`mynapoint takeover`, or an app that only ever ran on the other engine): it would decide every
person on an empty state. It says which engine to run or what to take over, and creates nothing."""

from __future__ import annotations

import pytest

from clients.admin import ensure_topics, topic_names
from clients.offline import made_configs, state_topics
from schemas import topics
from schemas.settings import ENGINES
from tests.integration.workers import refused_start

APP_ID = "mynapoint-state-home-it"

pytestmark = pytest.mark.engines("tansu")


def test_a_worker_refuses_the_other_engines_state(fresh_broker, tmp_path, worker_engine):
    other = next(e for e in ENGINES if e != worker_engine)
    theirs = list(state_topics(other, APP_ID).values())
    ensure_topics(fresh_broker.bootstrap, 4, theirs, configs=made_configs(other, APP_ID))
    said = refused_start(fresh_broker, tmp_path, app_id=APP_ID, engine=worker_engine)
    assert f"in the {other} workers' changelogs" in said, said
    assert f"mynapoint takeover --to {worker_engine}" in said, said
    present = topic_names(fresh_broker.bootstrap)
    assert not set(state_topics(worker_engine, APP_ID).values()) & present
    assert topics.JOURNAL not in present  # refused before creating any topic
