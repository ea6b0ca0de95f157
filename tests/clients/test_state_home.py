"""A worker refuses to start where the app's state lives in the other engine's changelogs
(clients/offline.py `state_elsewhere`): it would decide on an empty state beside the real one."""

from __future__ import annotations

import pytest

from clients.offline import state_elsewhere, state_topics
from schemas import topics

APP = "app"
FAUST = set(state_topics("faust", APP).values())
QUIX = set(state_topics("quix", APP).values())
OTHERS = {*topics.INPUT_TOPICS, topics.JOURNAL, topics.CLAIMS}


@pytest.mark.parametrize(
    ("engine", "present", "refused_for"),
    [
        pytest.param("faust", set(), None, id="a new app: either may start"),
        pytest.param("quix", OTHERS, None, id="topics but no state yet"),
        pytest.param("faust", OTHERS | FAUST, None, id="faust on its own state"),
        pytest.param("quix", OTHERS | QUIX, None, id="quix on its own state"),
        pytest.param("quix", OTHERS | FAUST, "faust", id="quix where faust keeps the state"),
        pytest.param("faust", OTHERS | QUIX, "quix", id="faust after a takeover to quix"),
        pytest.param("faust", {topics.changelog_topic(APP, "persons")} | QUIX, None,
                     id="both: not for this check to choose"),
        pytest.param("quix", {topics.changelog_topic("other-app", "persons")}, None,
                     id="another app's state"),
    ],
)
def test_a_worker_starts_only_where_its_engine_keeps_the_state(engine: str, present: set[str],
                                                              refused_for: str | None) -> None:
    why = state_elsewhere(engine, APP, present)
    if refused_for is None:
        assert why is None
    else:
        assert why is not None
        assert f"in the {refused_for} workers' changelogs" in why
        assert f"--engine {refused_for}" in why and f"mynapoint takeover --to {engine}" in why
