"""`mynapoint produce`'s send order (clients/produce.py): event time, ties in topic order, stable,
bad lines reported in file order and never sent, and the count of moved lines."""

from __future__ import annotations

import argparse
import bz2
import gzip
import lzma
from pathlib import Path
from typing import Any

import pytest

from clients.connect import run_blocking
from clients.produce import (
    TOPIC_RANK,
    cmd_produce,
    event_time_order,
    in_send_order,
    moved_count,
    plan,
    produce_file,
    produce_lines,
)
from schemas.codec import BadInput
from schemas.topics import INPUT_TOPICS
from tests.builders import account_reg, card, link, pay, renew, reserve, to_lines

# One instant written three ways: the sort compares instants, not strings.
NINE_JST = "2021-03-01T09:00:00+09:00"
NINE_JST_AS_UTC = "2021-03-01T00:00:00Z"
NINE_JST_AS_PLUS1 = "2021-03-01T01:00:00+01:00"


def _order(events: list[Any]) -> tuple[list[str], int]:
    """Event ids in send order, and the moved count (every event valid)."""
    lines = to_lines(events)
    ordered, moved = event_time_order((n, plan(line)) for n, line in enumerate(lines, start=1))
    ids = [_event_id(p.value) for _, p in ordered]
    return ids, moved


def _event_id(value: bytes) -> str:
    import json

    return str(json.loads(value)["event_id"])


def test_the_tie_order_is_the_input_topic_order_of_the_contract() -> None:
    # The documented table order (README "For integrators"), held once in schemas/topics.py.
    assert [t for t, _ in sorted(TOPIC_RANK.items(), key=lambda kv: kv[1])] == list(INPUT_TOPICS)
    assert INPUT_TOPICS == ("mynapoint.cards", "mynapoint.certificates", "mynapoint.reservations",
                            "mynapoint.registrations", "mynapoint.links", "mynapoint.payments")


ROWS = [
    pytest.param(
        [pay("B", "2021-03-02T09:00:00+09:00", event_id="pay"),
         card("A", "2021-03-01T09:00:00+09:00", event_id="card")],
        ["card", "pay"], 1, id="later-line-earlier-time-goes-first",
    ),
    pytest.param(
        # Same instant: topic order (cards < certificates < reservations < registrations < links
        # < payments), whatever the file order and the way the offset is written.
        [pay("A", NINE_JST, event_id="pay"),
         link("A", NINE_JST_AS_UTC, event_id="link"),
         account_reg("A", NINE_JST_AS_PLUS1, event_id="reg"),
         reserve("A", NINE_JST, event_id="res"),
         renew("A", NINE_JST_AS_UTC, event_id="renew"),
         card("A", NINE_JST, event_id="card")],
        ["card", "renew", "res", "reg", "link", "pay"], 5, id="ties-in-topic-order",
    ),
    pytest.param(
        # Same instant and topic: file order (stable), across people too.
        [account_reg("B", NINE_JST, event_id="b"), account_reg("A", NINE_JST_AS_UTC, event_id="a"),
         account_reg("C", NINE_JST, event_id="c")],
        ["b", "a", "c"], 0, id="full-ties-keep-file-order",
    ),
    pytest.param(
        # A file per person (each in time order), as an export per person gives: interleaved.
        [card("A", "2021-03-01T09:00:00+09:00", event_id="a1"),
         reserve("A", "2021-03-03T09:00:00+09:00", event_id="a2"),
         card("B", "2021-03-02T09:00:00+09:00", event_id="b1"),
         reserve("B", "2021-03-04T09:00:00+09:00", event_id="b2")],
        ["a1", "b1", "a2", "b2"], 1, id="per-person-file-interleaved",
    ),
    pytest.param(
        # Microseconds count; a later-written offset can be the earlier instant.
        [card("A", "2021-03-01T09:00:00.000002+09:00", event_id="late-by-1us"),
         card("B", "2021-03-01T09:00:00.000001+09:00", event_id="early"),
         card("C", "2021-03-01T08:30:00+08:00", event_id="half-past-nine-jst")],
        ["early", "late-by-1us", "half-past-nine-jst"], 1, id="instants-not-strings",
    ),
    pytest.param(
        [card("A", "2021-03-01T09:00:00+09:00", event_id="x"),
         card("B", "2021-03-02T09:00:00+09:00", event_id="y")],
        ["x", "y"], 0, id="already-in-order-moves-nothing",
    ),
]


@pytest.mark.parametrize(("events", "expected", "moved"), ROWS)
def test_send_order(events: list[Any], expected: list[str], moved: int) -> None:
    assert _order(events) == (expected, moved)


@pytest.mark.parametrize(("events", "expected", "moved"), ROWS)
def test_lines_in_send_order_are_the_given_bytes_in_that_order(
        events: list[Any], expected: list[str], moved: int) -> None:
    lines = to_lines(events)
    ordered = in_send_order(lines)
    assert [_event_id(line) for line in ordered] == expected
    assert sorted(ordered) == sorted(lines)  # the very lines, none re-encoded


def test_lines_in_send_order_refuse_a_bad_line() -> None:
    with pytest.raises(BadInput):
        in_send_order([*to_lines([card("A", NINE_JST)]), b'{"type": "card.issued"}'])


@pytest.mark.parametrize(
    ("order", "moved"),
    [
        ([], 0),
        ([1, 2, 3, 4], 0),
        ([2, 3, 4, 1], 1),  # one line from the end to the front: one move, not four
        ([4, 1, 2, 3], 1),
        ([4, 3, 2, 1], 3),
        ([1, 3, 2, 5, 4, 6], 2),
        ([2, 1, 4, 3, 6, 5], 3),
    ],
)
def test_moved_is_the_fewest_lines_to_move(order: list[int], moved: int) -> None:
    assert moved_count(order) == moved


def _file(tmp_path: Path, lines: list[bytes]) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_bad_lines_are_reported_in_file_order_not_sent_and_counted(tmp_path: Path) -> None:
    good = to_lines([pay("A", "2021-03-05T09:00:00+09:00", event_id="pay"),
                     card("A", "2021-03-01T09:00:00+09:00", event_id="card")])
    lines = [b"not json", good[0], b'{"event_id":"x","type":"card.exploded"}', good[1], b""]
    seen: list[int] = []
    report = run_blocking(produce_lines(lines, dry_run=True, on_bad=lambda b: seen.append(b.lineno)))
    assert report.lines == 5
    assert [(b.lineno, b.reason) for b in report.bad] == [
        (1, "not_json"), (3, "unknown_type"), (5, "empty")]
    assert seen == [1, 3, 5]
    assert report.total_sent == 2
    assert report.moved == 1  # among the valid events only
    # The file-order run reports the same lines, and moves nothing.
    kept = run_blocking(produce_lines(lines, dry_run=True, keep_order=True))
    assert [(b.lineno, b.reason) for b in kept.bad] == [(b.lineno, b.reason) for b in report.bad]
    assert kept.moved is None and kept.sent == report.sent
    assert produce_file(_file(tmp_path, lines), dry_run=True).moved == 1


class _Sent:
    """A stand-in for AIOKafkaProducer recording what would be sent, in order."""

    log: list[tuple[str, bytes, bytes]] = []
    made_with: dict[str, Any] = {}

    def __init__(self, **kwargs: Any):
        _Sent.made_with = kwargs

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, topic: str, value: bytes, key: bytes) -> Any:
        import asyncio

        _Sent.log.append((topic, key, value))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


@pytest.mark.parametrize(("keep_order", "idempotent"), [(False, True), (True, False)])
def test_the_send_path_uses_the_same_order(monkeypatch: pytest.MonkeyPatch,
                                           keep_order: bool, idempotent: bool) -> None:
    import aiokafka

    async def gives_producer_ids(*args: Any, **kwargs: Any) -> bool:
        return idempotent  # Apache Kafka, or Tansu

    monkeypatch.setattr(aiokafka, "AIOKafkaProducer", _Sent)
    monkeypatch.setattr("clients.produce.gives_producer_ids", gives_producer_ids)
    _Sent.log = []
    lines = to_lines([pay("A", "2021-03-05T09:00:00+09:00", event_id="pay"),
                      link("A", "2021-03-02T09:00:00+09:00", event_id="link"),
                      card("A", "2021-03-01T09:00:00+09:00", event_id="card")])
    report = run_blocking(produce_lines(lines, "127.0.0.1:1", create_topics=False,
                                        keep_order=keep_order))
    ids = [_event_id(v) for _, _, v in _Sent.log]
    assert ids == (["pay", "link", "card"] if keep_order else ["card", "link", "pay"])
    assert report.total_sent == 3
    assert report.moved == (None if keep_order else 2)
    assert {k for _, k, _ in _Sent.log} == {b"A"}
    assert report.idempotent is _Sent.made_with["enable_idempotence"] is idempotent
    assert _Sent.made_with["acks"] == "all"


def test_the_command_says_how_many_it_moved(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    lines = to_lines([pay("A", "2021-03-05T09:00:00+09:00", event_id="pay"),
                      card("A", "2021-03-01T09:00:00+09:00", event_id="card")]) + [b"oops"]
    args = argparse.Namespace(file=str(_file(tmp_path, lines)), bootstrap="127.0.0.1:1",
                              partitions=4, dry_run=True, keep_order=False, strict=False)
    assert cmd_produce(args) == 0
    err = capsys.readouterr().err
    assert "line 3: not_json:" in err
    assert "order: event time (occurred_at, then topic order): 1 of 2 events moved" in err
    assert "3 lines, would send: 2 events, bad lines: 1" in err
    args.keep_order = True
    assert cmd_produce(args) == 0
    assert "order: the file's (--keep-order)" in capsys.readouterr().err


def _through_the_aligner(lines: list[bytes]) -> list[tuple[str, bool]]:
    """What one partition's merge releases when `lines` were sent in this order (event id, late)."""
    from streams.core.align import Aligner

    aligner = Aligner(INPUT_TOPICS, idle_wait=3.0)
    offsets: dict[str, int] = {}
    for line in lines:
        p = plan(line)
        offset = offsets[p.topic] = offsets.get(p.topic, -1) + 1
        aligner.add(p.topic, 0, offset, p.occurred_at, line, now=0.0)
    # Everything has arrived and every source has been silent for longer than the idle wait.
    return [(_event_id(h.item), h.late) for h in aligner.release(100.0, lambda *_: False)]


def test_the_documented_worked_example() -> None:
    """README "Ordering across topics" and docs/ARCHITECTURE.md: a file grouped by person."""
    from tests.builders import decision_for, grants, phase1_ready, simulate

    before = to_lines(phase1_ready("A") + phase1_ready("B"))
    file = to_lines([link("A", "2020-09-20T10:00:00+09:00", account="acct-A", event_id="A-link"),
                     link("B", "2020-09-03T10:00:00+09:00", account="acct-B", event_id="B-link"),
                     pay("B", "2020-09-10T12:00:00+09:00", account="acct-B", amount=4000,
                         event_id="B-pay")])

    as_filed = _through_the_aligner(file)
    assert as_filed == [("B-pay", False), ("A-link", False), ("B-link", True)]
    by_id = dict(zip(["A-link", "B-link", "B-pay"], file, strict=True))
    outcomes = simulate(before + [by_id[e] for e, _ in as_filed])
    assert decision_for(outcomes, "B-pay").reason == "not_linked_service"
    assert decision_for(outcomes, "B-link").accepted

    ordered, moved = event_time_order((n, plan(line)) for n, line in enumerate(file, start=1))
    assert [n for n, _ in ordered] == [2, 3, 1] and moved == 1
    in_time = _through_the_aligner([p.value for _, p in ordered])
    assert in_time == [("B-link", False), ("B-pay", False), ("A-link", False)]
    outcomes = simulate(before + [by_id[e] for e, _ in in_time])
    assert decision_for(outcomes, "B-pay").accepted
    assert [g.points for g in grants(outcomes) if g.event_id == "B-pay"] == [1000]


@pytest.mark.parametrize("packed", [gzip.compress, bz2.compress, lzma.compress])
def test_a_compressed_file_is_refused_before_anything_is_sent(
        packed: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Before, each "line" of the compressed bytes was a bad line: "invalid character (byte 0)".
    lines = to_lines([card("A", "2021-03-01T09:00:00+09:00")])
    path = tmp_path / "events.jsonl.z"
    path.write_bytes(packed(b"\n".join(lines) + b"\n"))
    args = argparse.Namespace(file=str(path), bootstrap="127.0.0.1:1", partitions=4,
                              dry_run=True, keep_order=False, strict=False)
    assert cmd_produce(args) == 2
    err = capsys.readouterr().err
    assert f"{path} is " in err and "-compressed, not JSON Lines: decompress it first" in err
    assert "nothing was sent" in err and "line 1" not in err
