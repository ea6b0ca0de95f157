"""What the offline commands hold while they read an app's topics and how `mynapoint rescale` keeps
what it read, without a broker: the changelogs are folded to their latest rows as their records
arrive (`clients.offline.StateRows`); the rescale's snapshot goes to a database on disk
(`clients.snapshot.Snapshot`), which gives what the pure functions give in memory
(`streams.audit.rescale.journal_at`, `table_at`, `streams.audit.takeover.to_quix`); the state
file holds the progress, and one of version 1 or 2 (the snapshot in msgpack) is finished as
version 3."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import pytest

from clients.offline import StateRows, state_rows
from clients.rescale import (
    LEGACY_SNAPSHOT_KEYS,
    RECORD_KEYS,
    STATE_VERSION,
    RescaleFailed,
    State,
)
from clients.snapshot import Snapshot, StoreError
from schemas import topics
from schemas.topics import partition_for_key
from streams.audit.rescale import (
    Header,
    Pending,
    RescaleError,
    claims_at,
    input_moves,
    inputs_to_move,
    journal_at,
    rows_at,
    table_at,
)
from streams.audit.takeover import (
    QUIX_COLUMN_FAMILY,
    QUIX_COLUMN_FAMILY_HEADER,
    QUIX_STATE_SOURCES,
    TakeoverError,
    quix_key,
    quix_rows_at,
    to_faust,
    to_quix,
)
from streams.core.ledger import UNKNOWN_AT


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


def _as_stored(data: dict[str, Any]) -> dict[str, Any]:
    """`data` as msgpack gives it back (tuples as lists)."""
    return msgspec.msgpack.decode(msgspec.msgpack.encode(data))


# --- the snapshot database ----------------------------------------------------------------------


def _history(people: int = 60, most: int = 3) -> tuple[dict[int, list[Any]], dict[bytes, bytes]]:
    """A journal of 4 partitions as the live pipeline leaves it (batches of up to `most` entries,
    records of one, answers), with its persons table."""
    from devtools.demo import generate
    from streams.audit.replay import record_offline
    from streams.core.config import load_config
    from tests.audit.journals import batched

    cfg = load_config("streams/data/demo.toml")
    rec = batched(record_offline(list(generate(people=people, seed=3, bad_ratio=0.0)), cfg,
                                 partitions=4), most)
    journal: dict[int, list[Any]] = {}
    for p, offset, key, value in rec.journal:
        journal.setdefault(p, []).append((offset, key, value))
    return journal, rec.table


def _filled(path: Path, journal: dict[int, list[Any]], *, pieces: int = 3) -> Snapshot:
    snap = Snapshot.create(path)
    for p, records in journal.items():  # each partition in pieces, as they are read
        for i in range(pieces):
            snap.add_journal(p, records[len(records) * i // pieces:len(records) * (i + 1) // pieces])
    snap.seal()
    return snap


@pytest.mark.parametrize("m", [5, 8])
def test_the_journal_at_m_on_disk_is_the_one_in_memory(tmp_path: Path, m: int) -> None:
    journal, persons = _history()
    committed = {p: len(recs) * 2 // 3 for p, recs in journal.items()}
    want = journal_at(journal, committed, m)
    snap = _filled(tmp_path / "s.db", journal)
    plan = snap.plan(committed, m)
    assert [list(snap.journal_at(q)) for q in range(m)] == want.partitions
    assert plan.folded == want.folded and plan.entries == len(want.moved)
    for at, offset in want.moved.items():
        assert snap.where(at) == offset
    assert snap.where((0, 0, b"P9999999")) == UNKNOWN_AT
    # The tables' rows, with the offsets they remember, placed as in memory.
    # Every partition holds people: the comparison below is not of empty lists.
    assert all(table_at("persons", persons, m, n=4, moved=want.moved))
    snap.add_rows("persons", persons.items())
    placed: list[list[Any]] = [[] for _ in range(m)]
    for q, key, value in rows_at("persons", snap.rows("persons"), m, n=4, where=snap.where):
        placed[q].append((key, value))
    assert placed == table_at("persons", persons, m, n=4, moved=want.moved)
    snap.close()


def test_a_journal_at_256_partitions_and_more_is_read_back_from_every_one(
        tmp_path: Path) -> None:
    # Partition 255's prefix ends in 0xff: its end is not that byte plus one.
    journal, _ = _history(people=1000, most=1)
    want = journal_at(journal, {}, 260)
    assert want.partitions[255]
    snap = _filled(tmp_path / "s.db", journal)
    snap.plan({}, 260)
    assert [list(snap.journal_at(q)) for q in range(260)] == want.partitions
    snap.close()


def test_the_plan_is_kept_and_made_again_when_a_run_stopped_while_making_it(
        tmp_path: Path) -> None:
    journal, _ = _history(people=30)
    committed = {p: len(recs) // 2 for p, recs in journal.items()}
    path = tmp_path / "s.db"
    snap = _filled(path, journal)
    first = snap.plan(committed, 8)
    snap.close()
    again = Snapshot.open(path)
    assert again.plan(committed, 8) == first  # read back, not made again
    # A run that stopped while making it: the plan's own record is written last.
    again._db.delete(b"P")
    again._db[b"J" + b"\xff" * 8] = b"left over"
    remade = again.plan(committed, 8)
    assert remade == first
    assert sum(1 for q in range(8) for _ in again.journal_at(q)) == first.entries
    assert [list(again.journal_at(q)) for q in range(8)] == journal_at(journal, committed,
                                                                       8).partitions
    again.close()


def test_a_journal_whose_start_was_deleted_is_refused_before_anything_is_sent(
        tmp_path: Path) -> None:
    journal, _ = _history(people=20)
    journal[2] = journal[2][3:]  # retention deleted its first records
    snap = _filled(tmp_path / "s.db", journal)
    with pytest.raises(RescaleError, match="journal partition 2 starts at offset 3"):
        snap.plan({}, 8)
    with pytest.raises(RescaleError, match="journal partition 1 .* committed 9999"):
        snap.plan({1: 9999}, 8)
    snap.close()


def test_changelog_rows_are_folded_on_disk_to_the_latest_as_compaction_keeps_them(
        tmp_path: Path) -> None:
    recs = _changelog(versions=4)
    snap = Snapshot.create(tmp_path / "s.db")
    for i in range(5):  # over several reads, and within one batch
        snap.add_rows("persons", [(r.key, r.value) for r in recs[len(recs) * i // 5:
                                                                 len(recs) * (i + 1) // 5]])
    snap.add_rows("timeline", [(b"P001", b"a"), (b"P001", None), (b"P002", b"b"),
                               (b"P002", None), (b"P002", b"c")])
    snap.seal()
    assert dict(snap.rows("persons")) == state_rows("faust", recs)
    assert list(snap.rows("timeline")) == [(b"P002", b"c")]
    assert snap.counts(["persons", "timeline", "claims"]) == (
        0, 0, {"persons": 32, "timeline": 1, "claims": 0})
    snap.close()


def test_claims_keep_their_order_and_go_to_their_keys_partition(tmp_path: Path) -> None:
    requests = {p: [(o, b"k%d-%d" % (p, o), b"v") for o in range(5)] for p in (1, 0, 3)}
    snap = Snapshot.create(tmp_path / "s.db")
    for p, recs in requests.items():
        snap.add_claims(p, recs)
    snap.seal()
    read = list(snap.claims())
    assert read == [(k, v) for p in sorted(requests) for _, k, v in requests[p]]
    assert snap.claims_count() == 15
    placed = claims_at(read, 8)
    assert [k for q in placed for k, _ in q] != [k for k, _ in read]  # spread over partitions
    snap.close()


def _quix_records(tables: dict[str, dict[bytes, bytes]]) -> dict[str, list[Rec]]:
    own = ((QUIX_COLUMN_FAMILY_HEADER, QUIX_COLUMN_FAMILY),)
    out: dict[str, list[Rec]] = {s: [] for s in QUIX_STATE_SOURCES}
    for table, rows in tables.items():
        source = topics.CLAIMS if table == "claims" else topics.JOURNAL
        for row, value in rows.items():
            out[source].append(Rec(quix_key(table, row), b"old", own))
            out[source].append(Rec(quix_key(table, row), value, own))
    return out


def test_a_quix_state_is_kept_in_the_tables_layout_and_written_back_as_to_quix(
        tmp_path: Path) -> None:
    journal, persons = _history(people=30)
    tables = {"persons": persons, "timeline": {b"P0000001": b"t"},
              "claims": {b"account:x": b"P0000001"}}
    snap = _filled(tmp_path / "s.db", journal)
    other = ((QUIX_COLUMN_FAMILY_HEADER, b"__metadata__"),)
    for source, recs in _quix_records(tables).items():
        recs.append(Rec(b"not a row", b"x", other))  # another column family: not the state's
        snap.add_quix_rows(source, [(r.key, r.value, dict(r.headers).get(
            QUIX_COLUMN_FAMILY_HEADER)) for r in recs])
    snap.check_quix_rows()
    assert {t: dict(snap.rows(t)) for t in tables} == tables
    # Taken over to Faust: each table's rows placed as `to_faust` places them.
    states = {source: state_rows("quix", recs) for source, recs in _quix_records(tables).items()}
    for table, want_rows in to_faust(states, 8).items():
        got: list[list[Any]] = [[] for _ in range(8)]
        for q, key, value in rows_at(table, snap.rows(table), 8):
            got[q].append((key, value))
        assert got == want_rows
    committed = {p: len(recs) // 2 for p, recs in journal.items()}
    snap.plan(committed, 8)
    want = to_quix(tables, 8, n=4, moved=journal_at(journal, committed, 8).moved)
    for source in QUIX_STATE_SOURCES:
        placed: list[list[Any]] = [[] for _ in range(8)]
        for q, key, value in quix_rows_at(source, snap.rows, 8, n=4, where=snap.where):
            placed[q].append((key, value))
        assert placed == want[source]
    snap.close()


def test_a_key_of_the_quix_state_that_is_no_row_is_refused_unless_deleted(
        tmp_path: Path) -> None:
    own = QUIX_COLUMN_FAMILY
    snap = Snapshot.create(tmp_path / "s.db")
    snap.add_quix_rows(topics.JOURNAL, [(b"stray", b"1", own), (b"gone", b"1", own),
                                        (b"gone", None, own)])
    with pytest.raises(TakeoverError, match="'stray'"):
        snap.check_quix_rows()
    snap.discard()
    assert not (tmp_path / "s.db").exists() and not (tmp_path / "s.db.tmp").exists()


def _backlog(n: int, seed: int) -> dict[int, list[Pending]]:
    """Per old partition of n, input records after the committed offset: keyed by their person
    (some keyless), event times going back and forth, some without one, headers on some."""
    rng = random.Random(seed)
    backlog: dict[int, list[Pending]] = {}
    for i in range(400):
        person = b"P%07d" % rng.randrange(60)
        key = None if rng.random() < 0.05 else person
        p = partition_for_key(person, n)
        when = {"occurred_at": f"2021-01-{1 + rng.randrange(28):02d}T00:00:00+09:00"}
        value = b"not json" if rng.random() < 0.05 else msgspec.json.encode(when)
        # A header's value may be null (Kafka clients read it as None).
        headers: list[Header] = [("h", b"%d" % i), ("null", None)] if rng.random() < 0.3 else []
        offset = 100 + len(backlog.get(p, []))
        backlog.setdefault(p, []).append((offset, key, value, headers))
    return backlog


@pytest.mark.parametrize(("n", "m"), [(4, 8), (3, 5), (4, 6)])
def test_the_inputs_to_move_on_disk_are_the_ones_in_memory(tmp_path: Path, n: int,
                                                           m: int) -> None:
    snap = _filled(tmp_path / "s.db", {})
    backlogs = {topics.PAYMENTS: _backlog(n, seed=m), topics.LINKS: _backlog(n, seed=m + 1)}
    journaled = {(topics.PAYMENTS, p, recs[1][0]) for p, recs in backlogs[topics.PAYMENTS].items()}
    snap.add_inputs(topics.LINKS, [(0, 9, (1, b"left", b"by", []))])  # an earlier run's
    snap.clear_inputs()
    for i in range(3):  # each partition in pieces, the partitions' pieces interleaved
        for t, backlog in backlogs.items():
            for p, recs in backlog.items():
                piece = recs[len(recs) * i // 3:len(recs) * (i + 1) // 3]
                snap.add_inputs(t, ((q, p, r) for q, r in inputs_to_move(t, p, piece,
                                                                          journaled, m)))
    for t, backlog in backlogs.items():
        want = input_moves(t, backlog, journaled, m)
        assert sum(len(v) for v in want.values()) == sum(len(v) for v in backlog.values()) - (
            len(backlog) if t == topics.PAYMENTS else 0)
        merged = [q for q, mvs in want.items() if len({mv.source[0] for mv in mvs}) > 1]
        assert merged if m % n else not merged  # several old partitions feed one new one
        got = list(snap.input_moves(t))
        assert got == [mv for q in sorted(want) for mv in want[q]]
    snap.clear_inputs()
    assert not list(snap.input_moves(topics.PAYMENTS))
    snap.close()


def test_a_database_that_cannot_be_written_says_where(tmp_path: Path) -> None:
    import shutil

    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="cannot open .*file/s.db.tmp"):
        Snapshot.create(tmp_path / "file" / "s.db")
    snap = Snapshot.create(tmp_path / "s.db")
    snap.add_claims(0, [(0, b"k", b"v")])
    shutil.rmtree(tmp_path / "s.db.tmp")  # as a disk that fails under it
    with pytest.raises(StoreError, match="cannot write to .*s.db.tmp"):
        snap.seal()
    snap.discard()


def test_a_snapshot_is_complete_only_once_sealed(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    snap = Snapshot.create(path)
    snap.add_claims(0, [(0, b"k", b"v")])
    with pytest.raises(FileNotFoundError):
        Snapshot.open(path)  # a run that stopped here takes the snapshot again
    snap.close()
    again = Snapshot.create(path)  # ... from nothing: what the stopped run wrote is gone
    assert again.claims_count() == 0
    again.seal()
    again.close()
    opened = Snapshot.open(path)
    assert opened.claims_count() == 0
    opened.close()


# --- the state file -------------------------------------------------------------------------------


def _legacy(entries: int) -> dict[str, Any]:
    """What versions 1 and 2 of the state file held once the snapshot was taken (version 1 all
    in one file; version 2 the snapshot's keys in a file of their own)."""
    person = [f"P{i:07d}".encode() for i in range(entries)]
    return {
        "v": 1, "app_id": "mynapoint", "from": 4, "to": 8, "done": ["check", "snapshot"],
        "rebuilt": {}, "engine": None,
        "committed": {topics.JOURNAL: {p: 1 for p in range(4)}},
        "configs": {topics.JOURNAL: {"retention.ms": "-1"}},
        "replicas": {topics.JOURNAL: 1},
        "journal": {p: [(o, k, b"\x93" * (o % 50))
                        for o, k in enumerate(k for k in person if partition_for_key(k, 4) == p)]
                    for p in range(4)},
        "claims": [(b"k%d" % i, b"P%07d" % i) for i in range(17)],
        "tables": {"persons": {k: b"x" * (i % 300) for i, k in enumerate(person)},
                   "claims": {}, "timeline": {k: b"t" for k in person[:16]}},
    }


def test_the_state_file_holds_the_progress_and_is_read_back_as_written(tmp_path: Path) -> None:
    path = tmp_path / "rescale.state"
    data = {k: v for k, v in _legacy(10).items() if k not in RECORD_KEYS}
    data["v"] = STATE_VERSION
    state = State(path, data)
    state.mark("grow")
    loaded = State.load(path)
    assert loaded is not None and loaded.data == _as_stored(data)
    assert loaded.done("grow") and not path.with_name(path.name + ".tmp").exists()


def test_a_missing_snapshot_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "rescale.state"
    State(path, {"v": STATE_VERSION, "done": ["check", "snapshot"], "snapshot": True}).save()
    with pytest.raises(RescaleFailed, match="rescale.state.snapshot.db"):
        State.load(path)


def _assert_upgraded(path: Path, legacy: dict[str, Any]) -> None:
    loaded = State.load(path)
    assert loaded is not None
    assert loaded.data == {**_as_stored({k: v for k, v in legacy.items()
                                         if k not in RECORD_KEYS}),
                           "v": STATE_VERSION, "snapshot": True}
    assert msgspec.msgpack.decode(path.read_bytes())["v"] == STATE_VERSION  # written as 3
    assert not State.legacy_snapshot_path(path).exists()
    snap = Snapshot.open(State.snapshot_path(path))
    stored = _as_stored(legacy)
    assert [(p, list(r)) for p, r in snap.journal()] == [
        (p, r) for p in sorted(stored["journal"]) for r in stored["journal"][p]]
    assert [list(c) for c in snap.claims()] == stored["claims"]
    for table, rows in stored["tables"].items():
        assert dict(snap.rows(table)) == rows
    plan = snap.plan({int(p): o for p, o in stored["committed"][topics.JOURNAL].items()}, 8)
    assert plan.entries == sum(len(r) for r in stored["journal"].values())
    snap.close()
    again = State.load(path)  # read as version 3 now
    assert again is not None and again.data == loaded.data


def test_a_version_1_state_file_is_finished_as_version_3(tmp_path: Path) -> None:
    path = tmp_path / "rescale.state"
    v1 = _legacy(300)  # everything in one file, the snapshot inline
    path.write_bytes(msgspec.msgpack.encode(v1))
    _assert_upgraded(path, v1)


def test_a_version_2_state_file_is_finished_as_version_3(tmp_path: Path) -> None:
    path = tmp_path / "rescale.state"
    legacy = _legacy(300)
    progress = {k: v for k, v in legacy.items() if k not in LEGACY_SNAPSHOT_KEYS}
    path.write_bytes(msgspec.msgpack.encode({**progress, "v": 2, "snapshot": True}))
    State.legacy_snapshot_path(path).write_bytes(msgspec.msgpack.encode(
        {k: legacy[k] for k in LEGACY_SNAPSHOT_KEYS}))
    _assert_upgraded(path, {**legacy, "v": 2})


@pytest.mark.parametrize("version", [1, 2])
def test_a_state_file_checked_only_is_finished_as_version_3(tmp_path: Path, version: int) -> None:
    path = tmp_path / "rescale.state"
    checked = {k: v for k, v in _legacy(3).items() if k not in LEGACY_SNAPSHOT_KEYS}
    path.write_bytes(msgspec.msgpack.encode({**checked, "v": version, "done": ["check"]}))
    loaded = State.load(path)
    assert loaded is not None and loaded.data["v"] == STATE_VERSION
    assert not loaded.data["snapshot"] and not State.snapshot_path(path).exists()


def test_a_missing_version_2_snapshot_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "rescale.state"
    path.write_bytes(msgspec.msgpack.encode({"v": 2, "done": ["check", "snapshot"],
                                             "snapshot": True}))
    with pytest.raises(RescaleFailed, match="rescale.state.snapshot"):
        State.load(path)


@pytest.mark.parametrize("content", [b"", b"\xc1", b"\x92\x01"])
def test_an_unreadable_state_file_says_what_to_do(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "rescale.state"
    path.write_bytes(content)
    with pytest.raises(RescaleFailed, match="rescale.state"):
        State.load(path)
