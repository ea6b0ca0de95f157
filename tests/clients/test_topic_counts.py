"""The partition count `clients.admin.ensure_topics` makes a topic with (`made_count`): a Quix
worker's state changelogs follow their source topics' counts, as Quix makes and checks them, so
that where the worker may not create topics it names them with their sources, in one round."""

from __future__ import annotations

import pytest

from clients.admin import made_count

FOLLOW = {"changelog": "journal"}


@pytest.mark.parametrize(("name", "counts", "have", "made"), [
    ("journal", {}, {}, 4),                    # the count asked for
    ("leader", {"leader": 1}, {}, 1),          # its own count
    ("changelog", {}, {"journal": 6}, 6),      # its source's, as the broker has it
    ("changelog", {}, {}, 4),                  # its source's, made in the same call
    ("changelog", {"journal": 2}, {}, 2),      # ... with the source's own count
    ("changelog", {"journal": 2}, {"journal": 6}, 6),  # what exists wins
])
def test_a_topic_gets_its_own_count_or_its_sources(name, counts, have, made):
    assert made_count(name, 4, counts, FOLLOW, have) == made
