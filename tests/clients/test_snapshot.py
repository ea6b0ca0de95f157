"""What the offline commands hold while they read an app's topics and how `mynapoint rescale` keeps
its state file, without a broker: the changelogs are folded to their latest rows as their records
arrive (`clients.offline.StateRows`), and the state file is written piece by piece, byte for byte
what one `msgspec.msgpack.encode` of it gives (`clients.rescale.write_msgpack`), and read back;
the snapshot is written once beside the progress, and a state file of version 1 (the snapshot
inside) is read and written on as version 2."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import pytest

from clients.offline import StateRows, state_rows
from clients.rescale import SNAPSHOT_KEYS, STATE_VERSION, RescaleFailed, State, write_msgpack
from streams.audit.takeover import QUIX_COLUMN_FAMILY, QUIX_COLUMN_FAMILY_HEADER


class Rec(NamedTuple):
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


def _changelog(versions: int) -> list[Rec]:
    """Each of 40 keys written `versions` times (the last value wins), and every fifth deleted."""
    recs = [Rec(b"P%03d" % k, b"v%d-%d" % (k, v)) for v in range(versions) for k in range(40)]
    return recs + [Rec(b"P%03d" % k, None) for k in range(0, 40, 5)] + [Rec(None, b"no key")]


@pytest.mark.parametrize("pieces", [1, 3, 7, 1000])
def test_a_changelog_folded_piece_by_piece_gives_its_latest_rows(pieces: int) -> None:
    recs = _changelog(versions=4)
    folded = StateRows("faust")
    for i in range(pieces):
        folded.add(recs[len(recs) * i // pieces:len(recs) * (i + 1) // pieces])
    assert folded.rows == state_rows("faust", recs)
    assert folded.rows == {b"P%03d" % k: b"v%d-3" % k for k in range(40) if k % 5}


def test_a_quix_changelog_keeps_only_the_states_own_column_family() -> None:
    own = ((QUIX_COLUMN_FAMILY_HEADER, QUIX_COLUMN_FAMILY),)
    other = ((QUIX_COLUMN_FAMILY_HEADER, b"__metadata__"),)
    folded = StateRows("quix")
    folded.add([Rec(b"a", b"1", own), Rec(b"b", b"x", other)])
    folded.add([Rec(b"a", b"2", own), Rec(b"b", None, other)])
    assert folded.rows == {b"a": b"2"}


def _snapshot(entries: int) -> dict[str, Any]:
    """A state file's data: maps and arrays of every header size msgpack has (up to 15
    elements, up to 65,535, more), int and str keys, tuples, bytes and None."""
    return {
        "v": 1, "app_id": "mynapoint", "from": 4, "to": 8, "done": ["check", "snapshot"],
        "rebuilt": {}, "engine": None,
        "committed": {"mynapoint.journal": {p: p * 1000 for p in range(4)}},
        "configs": {"mynapoint.journal": {"retention.ms": "-1"}},
        "replicas": {"mynapoint.journal": 1},
        "journal": {p: [(o, b"P%07d" % o, b"\x93" * (o % 50)) for o in range(entries >> p)]
                    for p in range(4)},
        "claims": [(b"k%d" % i, None) for i in range(17)],
        "tables": {"persons": {b"P%07d" % i: b"x" * (i % 300) for i in range(entries)},
                   "claims": {}, "timeline": {b"T%d" % i: b"t" for i in range(16)}},
    }


@pytest.mark.parametrize("entries", [3, 16, 70_000])
def test_the_state_file_is_written_piece_by_piece_as_one_encoding_would(entries: int) -> None:
    data = _snapshot(entries)
    out = io.BytesIO()
    write_msgpack(out, data)
    assert out.getvalue() == msgspec.msgpack.encode(data)


def _as_stored(data: dict[str, Any]) -> dict[str, Any]:
    """`data` as msgpack gives it back (tuples as lists)."""
    return msgspec.msgpack.decode(msgspec.msgpack.encode(data))


def test_the_state_file_is_read_back_as_written(tmp_path: Path) -> None:
    path = tmp_path / "rescale.state"
    data = {**_snapshot(1000), "v": STATE_VERSION}
    State(path, data).save()
    loaded = State.load(path)
    assert loaded is not None
    assert loaded.data == _as_stored({**data, "snapshot": True})
    assert not path.with_name(path.name + ".tmp").exists()


def test_the_snapshot_is_written_once_beside_the_progress(tmp_path: Path) -> None:
    path = tmp_path / "rescale.state"
    state = State(path, {**_snapshot(1000), "v": STATE_VERSION})
    state.mark("snapshot")
    progress = msgspec.msgpack.decode(path.read_bytes())
    assert not set(SNAPSHOT_KEYS) & set(progress)  # only the progress is rewritten at each step
    snapshot = State.snapshot_path(path)
    written = snapshot.read_bytes()
    state.data["rebuilt"]["mynapoint.journal"] = 5
    state.mark("rebuild:mynapoint.journal")
    assert snapshot.read_bytes() == written
    loaded = State.load(path)
    assert loaded is not None and loaded.done("rebuild:mynapoint.journal")
    assert loaded.data["rebuilt"] == {"mynapoint.journal": 5}
    assert loaded.data["journal"] == _as_stored(state.data)["journal"]


@pytest.mark.parametrize("taken", [True, False], ids=["snapshot-taken", "checked-only"])
def test_a_version_1_state_file_is_finished_and_then_written_as_version_2(tmp_path: Path,
                                                                          taken: bool) -> None:
    # What a run of the earlier version left: everything in one file, the snapshot inline.
    path = tmp_path / "rescale.state"
    v1 = {**_snapshot(100), "done": ["check", "snapshot"] if taken else ["check"]}
    if not taken:
        for key in SNAPSHOT_KEYS:
            del v1[key]
    path.write_bytes(msgspec.msgpack.encode(v1))
    loaded = State.load(path)
    assert loaded is not None
    assert loaded.data["v"] == STATE_VERSION
    assert {k: v for k, v in loaded.data.items() if k not in ("v", "snapshot")} == _as_stored(
        {k: v for k, v in v1.items() if k != "v"})
    loaded.mark("grow")
    assert State.snapshot_path(path).exists() == taken
    again = State.load(path)
    assert again is not None and again.data == loaded.data


def test_a_missing_snapshot_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "rescale.state"
    State(path, {**_snapshot(10), "v": STATE_VERSION}).save()
    State.snapshot_path(path).unlink()
    with pytest.raises(RescaleFailed, match="rescale.state.snapshot"):
        State.load(path)


@pytest.mark.parametrize("content", [b"", b"\xc1", b"\x92\x01"])
def test_an_unreadable_state_file_says_what_to_do(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "rescale.state"
    path.write_bytes(content)
    with pytest.raises(RescaleFailed, match="rescale.state"):
        State.load(path)
