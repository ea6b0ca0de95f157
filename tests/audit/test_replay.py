"""Replay (streams/audit/replay.py) and the export file (streams/audit/export.py), offline.

`record_offline` stands in for the live pipeline (intake, journal, ledger fold, claims answered
through the journal); replay must reproduce exactly what it published and stored, and report
every kind of tampering."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from cli.main import main
from devtools.demo import generate
from schemas.codec import OUTCOME_ENCODER
from schemas.journal import JOURNAL_ENCODER, AnswerEntry, EventEntry, JournalEntry
from schemas.outcomes import DeadLetter
from streams.audit.export import (
    ExportError,
    History,
    Published,
    add_journal_records,
    journal_line,
    journal_lines,
    other_rules,
    read_export,
    stored_rules_versions,
)
from streams.audit.replay import KINDS, Recorded, record_offline, replay, replay_history
from streams.audit.simulate import run
from streams.core.config import build_config, load_config
from streams.core.engine import Engine
from streams.core.ledger import RECORD_ENCODER
from streams.core.versions import answer_entry_v0, decode_ledger_record, event_entry_v0
from tests.audit.journals import batch, batched

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "streams" / "data" / "demo.toml"
CFG = load_config(DEMO)


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    return list(generate(people=300, seed=5, bad_ratio=0.01))


@pytest.fixture(scope="module")
def recorded(lines) -> Recorded:
    return record_offline(lines, CFG)


def _history(rec: Recorded, **kw) -> History:
    return rec.history(**kw)


def _copy(rec: Recorded) -> Recorded:
    return Recorded(list(rec.journal), list(rec.outputs), dict(rec.table))


def _by_person(outcomes) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = defaultdict(list)
    for o in outcomes:
        if type(o) is not DeadLetter:  # replay has none: they never reach the journal
            out[o.person_id].append(OUTCOME_ENCODER.encode(o))
    return dict(out)


def test_replay_reproduces_everything_published_and_stored(recorded, lines):
    replayed, report = replay_history(_history(recorded), CFG)
    assert report.ok, report.render()
    assert report.people == 300
    assert report.events == len(lines) - report.dead_letters > 2500
    assert report.answers > 0 and report.redelivered == 0
    assert report.outcomes_replayed == report.outcomes_compared
    assert report.outcomes_published == report.outcomes_compared + report.dead_letters
    assert report.tables_compared == 300
    assert report.published_rules_versions == {CFG.version: report.outcomes_compared - sum(
        1 for _, _, _, _, v in recorded.outputs if b'"kind":"alert"' in v)}
    assert "differences: none" in report.render()


def test_the_rules_versions_of_stored_outcomes_are_counted_as_replay_counts_them(recorded):
    # `export` warns from this count, `rescale` refuses from it: the same figure as replay's.
    _, report = replay_history(_history(recorded), CFG)
    values = [v for _, _, _, _, v in recorded.outputs]
    assert stored_rules_versions(values) == report.published_rules_versions
    assert stored_rules_versions([*values, None, b"not json", b"[1]"]) == \
        report.published_rules_versions
    assert other_rules(report.published_rules_versions, CFG.version) is None
    n = report.published_rules_versions[CFG.version]
    assert other_rules({**report.published_rules_versions, "r-0": 1200}, "r-1") == \
        f"r-0 (1,200), {CFG.version} ({n:,})"


def test_export_says_when_its_outcomes_were_decided_under_other_rules():
    from cli.audit import export_rules_note

    assert export_rules_note({"r-a": 10}, "r-a", "x.toml") is None
    assert export_rules_note({}, "r-a", "x.toml") is None
    wrong = export_rules_note({"r-b": 10}, "r-a", "defaults (RULES.md)")
    assert wrong is not None and wrong.startswith("warning: the exported outcomes carry rules "
                                                  "version(s) r-b (10), not r-a")
    assert "export again with the configuration the workers run with" in wrong
    # After a genuine change of rules, exporting again cannot help: it is said as it is.
    changed = export_rules_note({"r-a": 5, "r-b": 10}, "r-a", "x.toml")
    assert changed is not None and changed.startswith("note: besides r-a (5)")
    assert "r-b (10)" in changed and "export again" not in changed


def test_replay_equals_simulate_per_person(recorded, lines):
    replayed = replay(_history(recorded).entries(), CFG)
    simulated = [o for batch in run(lines, CFG, Engine(CFG)) for o in batch]
    assert _by_person(replayed.outcomes) == _by_person(simulated)


def test_a_tampered_grant_is_a_content_difference(recorded):
    rec = _copy(recorded)
    i, (topic, p, o, key, value) = next(
        (i, r) for i, r in enumerate(rec.outputs) if b'"kind":"grant"' in r[4])
    grant = msgspec.json.decode(value)
    forged = msgspec.json.encode({**grant, "points": grant["points"] + 1000})
    rec.outputs.append((topic, p, 10_000, key, forged))  # published again, with other points
    _, report = replay_history(_history(rec), CFG)
    assert not report.ok
    assert dict(report.differences) == {"content_differs": 1}
    (diff,) = report.examples
    assert diff.outcome_id == grant["outcome_id"] and diff.published["points"] == grant["points"] + 1000
    assert diff.replayed["points"] == grant["points"]
    assert f"points published {grant['points'] + 1000}, replayed {grant['points']}" in diff.detail
    text = report.render()
    assert "content_differs" in text and grant["outcome_id"] in text


def test_missing_unexpected_wrong_topic_and_exact_repeats(recorded):
    rec = _copy(recorded)
    decisions = [i for i, r in enumerate(rec.outputs) if r[0] == "mynapoint.decisions"]
    dropped = rec.outputs.pop(decisions[0])
    topic, p, o, key, value = rec.outputs[decisions[5]]
    rec.outputs.append((topic, p, 20_000, key, value))  # an exact repeat: fine
    rec.outputs.append(("mynapoint.grants", p, 20_001, key, value))  # a decision on grants
    fake = {**msgspec.json.decode(value), "outcome_id": "not-derived", "event_id": "forged"}
    rec.outputs.append((topic, p, 20_002, key, msgspec.json.encode(fake)))
    rec.outputs.append((topic, p, 20_003, key, b"not json"))
    _, report = replay_history(_history(rec), CFG)
    assert dict(report.differences) == {"missing": 1, "wrong_topic": 1, "unexpected": 1,
                                        "unreadable": 1}
    assert report.exact_repeats == 2  # the repeat, and the copy on the wrong topic
    missing = next(d for d in report.examples if d.kind == "missing")
    assert missing.outcome_id == msgspec.json.decode(dropped[4])["outcome_id"]


def test_identical_decisions_on_repeated_inputs_must_all_be_published():
    card = {"event_id": "e1", "type": "card.issued", "person_id": "P1",
            "occurred_at": "2020-06-01T10:00:00+09:00", "card_applied_on": "2020-05-01",
            "birth_date": "1980-01-01", "certificate_serial": "C",
            "certificate_expires_at": "2030-01-01T00:00:00+09:00"}
    rec = record_offline([msgspec.json.encode(card)] * 3, CFG)
    values = [v for _, _, _, _, v in rec.outputs]
    assert len(values) == 3 and values[1] == values[2]  # two identical duplicate_event decisions
    _, report = replay_history(_history(rec), CFG)
    assert report.ok and report.exact_repeats == 0  # both copies are due
    rec.outputs.pop()
    _, report = replay_history(_history(rec), CFG)
    assert dict(report.differences) == {"missing": 1}
    assert "derived 2 times" in report.examples[0].detail


def test_redelivered_journal_entries_change_nothing(recorded):
    rec = _copy(recorded)
    # Redeliver every 10th entry right after itself, as a worker restart would.
    journal = []
    for n, item in enumerate(rec.journal):
        journal.append(item)
        if n % 10 == 0:
            journal.append(item)
    rec.journal = journal
    _, report = replay_history(_history(rec), CFG)
    assert report.ok, report.render()
    assert report.redelivered == len(recorded.journal[::10])


def test_table_differences(recorded):
    rec = _copy(recorded)
    keys = list(rec.table)
    r0 = decode_ledger_record(rec.table[keys[0]])
    assert r0.person is not None
    changed = msgspec.structs.replace(
        r0, person=msgspec.structs.replace(r0.person, points={"phase1": 4999}))
    rec.table[keys[0]] = RECORD_ENCODER.encode(changed)
    del rec.table[keys[1]]
    rec.table[b"NOBODY"] = rec.table[keys[2]]
    rec.table[keys[3]] = b"\xc1garbage"
    _, report = replay_history(_history(rec), CFG)
    # keys[3] is unreadable, so it is also absent from the table: state_missing.
    assert dict(report.differences) == {"state_differs": 1, "state_missing": 2,
                                        "state_unexpected": 1, "unreadable": 1}
    differs = next(d for d in report.examples if d.kind == "state_differs")
    assert differs.person_id == keys[0].decode() and "points" in differs.detail
    assert differs.published == {"points": {"phase1": 4999}}
    # Without the table, only outcomes are compared.
    _, report = replay_history(_history(rec, tables=False), CFG, tables=False)
    assert report.ok and report.tables_compared is None


def test_an_unreadable_journal_entry_is_reported(recorded):
    rec = _copy(recorded)
    p, o, k, _ = rec.journal[-1]
    rec.journal.append((p, o + 1, k, b"\x93garbage"))
    _, report = replay_history(_history(rec), CFG)
    assert dict(report.differences) == {"unreadable": 1}


def test_the_wrong_configuration_shows_in_every_decision_and_in_a_note(recorded):
    other = build_config({})
    _, report = replay_history(_history(recorded), other)
    assert report.differences["content_differs"] > 0
    assert "pass the configuration the pipeline ran with" in report.render()


def test_a_claim_without_its_answer_yet_is_counted_as_waiting():
    cfg = build_config({"reservation_budget": 10})
    event = {"event_id": "e1", "type": "card.issued", "person_id": "P1",
             "occurred_at": "2020-06-01T10:00:00+09:00", "card_applied_on": "2020-05-01",
             "birth_date": "1980-01-01", "certificate_serial": "C",
             "certificate_expires_at": "2030-01-01T00:00:00+09:00"}
    reserve = {"event_id": "e2", "type": "mykey.reserved", "person_id": "P1",
               "occurred_at": "2020-06-02T10:00:00+09:00", "mykey_id": "ABCDEFGH"}
    entries = [("P1", EventEntry(topic="mynapoint.cards", partition=0, offset=0,
                                 value=msgspec.json.encode(event))),
               ("P1", EventEntry(topic="mynapoint.reservations", partition=0, offset=0,
                                 value=msgspec.json.encode(reserve)))]
    replayed = replay(entries, cfg)
    assert replayed.waiting == 1 and len(replayed.outcomes) == 1
    answer = AnswerEntry(claim_kind="reservation", claim_key="reservation-budget",
                         person_id="P1", event_id="e2", granted=True)
    replayed = replay([*entries, ("P1", answer)], cfg)
    assert replayed.waiting == 0 and len(replayed.outcomes) == 2


def test_report_as_json(recorded):
    rec = _copy(recorded)
    rec.outputs.pop(0)
    _, report = replay_history(_history(rec), CFG)
    d = json.loads(json.dumps(report.as_dict()))
    assert d["ok"] is False and d["total_differences"] >= 1
    assert set(d["differences"]) <= set(KINDS)
    assert d["outcomes"]["published_records"] == len(rec.outputs)
    assert d["examples"] and {"kind", "person_id", "detail"} <= set(d["examples"][0])


# --- the export file ----------------------------------------------------------------------------


def _export(rec: Recorded, **kw) -> bytes:
    buf = io.BytesIO()
    rec.write_export(buf, CFG, config_toml=DEMO.read_text(encoding="utf-8"), **kw)
    return buf.getvalue()


def test_export_then_replay_gives_the_same_report(recorded):
    data = _export(recorded)
    history = read_export(io.BytesIO(data), "export.jsonl")
    assert history.header["rules_version"] == CFG.version
    _, from_file = replay_history(history, CFG)
    _, direct = replay_history(_history(recorded), CFG)
    a, b = from_file.as_dict(), direct.as_dict()
    a.pop("source"), b.pop("source")
    assert a == b


def test_export_lines_keep_the_original_event_text(recorded):
    data = _export(recorded)
    lines = data.splitlines()
    header = json.loads(lines[0])
    assert header["record"] == "header" and header["format"] == "mynapoint-export"
    assert header["rules_version"] == CFG.version and header["exported_at"]
    first = json.loads(lines[1])
    assert first["record"] == "journal"
    raw = recorded.journal[0][3]
    stored = msgspec.msgpack.decode(raw)
    assert first["entry"]["value"].encode() == stored["value"]
    answers = [json.loads(ln) for ln in lines if b'"k":"answer"' in ln]
    assert answers and isinstance(answers[0]["entry"]["granted"], bool)
    outcome = next(json.loads(ln) for ln in lines if b'"record":"outcome"' in ln)
    assert {"topic", "partition", "offset", "outcome"} <= set(outcome)
    assert json.loads(lines[-1]) == {"record": "end", "journal": len(recorded.journal),
                                     "outcomes": len(recorded.outputs),
                                     "table": len(recorded.table)}


@pytest.mark.parametrize("mangle, message", [
    (lambda lines: lines[:-1], "truncated"),
    (lambda lines: lines[1:], "no header"),
    (lambda lines: [lines[0], b"{oops", *lines[1:]], "not JSON"),
    (lambda lines: [lines[0], *lines[2:]], "end line counts"),
    (lambda lines: [], "empty file"),
    (lambda lines: [lines[0].replace(b'"format_version":1', b'"format_version":9'), *lines[1:]],
     "format version 9"),
])
def test_a_damaged_export_is_refused(recorded, mangle, message):
    lines = _export(recorded, tables=False).splitlines()
    with pytest.raises(ExportError, match=message):
        read_export(io.BytesIO(b"\n".join(mangle(lines)) + b"\n"))


def _changed(kind: bytes, change) -> Callable[[list[bytes]], list[bytes]]:
    """The lines with the first record of `kind` changed by `change` (on its parsed object)."""
    def mangle(lines: list[bytes]) -> list[bytes]:
        i = next(i for i, ln in enumerate(lines) if b'"record":"%s"' % kind in ln)
        obj = json.loads(lines[i])
        change(obj)
        return [*lines[:i], json.dumps(obj).encode(), *lines[i + 1:]]
    return mangle


@pytest.mark.parametrize("mangle, message", [
    (_changed(b"journal", lambda o: o.update(offset="x")),
     r"line 2: this journal record cannot be read \(ValueError: invalid literal"),
    (_changed(b"journal", lambda o: o.pop("partition")),
     r"this journal record cannot be read \(KeyError: 'partition'\)"),
    (_changed(b"outcome", lambda o: o.update(partition=None)),
     r"this outcome record cannot be read \(TypeError"),
    (_changed(b"table", lambda o: o.update(value_b64="not base64!")),
     r"this table record cannot be read \(Error: Only base64 data is allowed\)"),
])
def test_a_record_changed_by_hand_is_refused_naming_its_line(recorded, mangle, message):
    # Before, a traceback (ValueError, KeyError, TypeError) from every command reading the file.
    lines = _export(recorded, tables=True).splitlines()
    with pytest.raises(ExportError, match=message) as info:
        read_export(io.BytesIO(b"\n".join(mangle(lines)) + b"\n"))
    assert "Export it again" in str(info.value)


def test_export_without_tables_compares_outcomes_only(recorded):
    history = read_export(io.BytesIO(_export(recorded, tables=False)))
    assert history.records is None
    _, report = replay_history(history, CFG)
    assert report.ok and report.tables_compared is None


def test_unreadable_stored_entries_survive_the_export(recorded):
    rec = _copy(recorded)
    p, o, k, _ = rec.journal[-1]
    rec.journal.append((p, o + 1, k, b"\xc1"))
    history = read_export(io.BytesIO(_export(rec)))
    assert len(history.unreadable) == 1
    _, report = replay_history(history, CFG)
    assert dict(report.differences) == {"unreadable": 1}


def test_history_entries_are_per_partition_in_offset_order():
    h = History()
    e = EventEntry(topic="t", partition=0, offset=0, value=b"{}")
    h.journal = {1: [(0, "b", e)], 0: [(0, "a", e), (1, "c", e)]}
    assert [k for k, _ in h.entries()] == ["a", "c", "b"]
    assert h.journal_size == 3
    assert Published("t", 0, 0, None, "x").error == "x"
    assert JOURNAL_ENCODER.encode(e)


# --- journal records of several entries (schemas.journal.JournalBatch) --------------------------

EVENT = EventEntry(topic="mynapoint.cards", partition=1, offset=4, value=b'{"person_id":"P1"}')
ANSWER = AnswerEntry(claim_kind="account", claim_key="k", person_id="P2", event_id="e2",
                     granted=True)
NEWER_BATCH = msgspec.msgpack.encode({"k": "batch", "v": 2, "persons": [b"P1"], "entries": []})


@pytest.mark.parametrize(("raw", "items", "unreadable"), [
    pytest.param(JOURNAL_ENCODER.encode(EVENT), [(7, "P1", EVENT)], 0, id="one-entry"),
    pytest.param(event_entry_v0(EVENT), [(7, "P1", EVENT)], 0, id="one-entry-v0"),
    pytest.param(batch((b"P1", EVENT), (b"P2", ANSWER)), [(7, "P1", EVENT), (7, "P2", ANSWER)],
                 0, id="batch"),
    pytest.param(batch((b"P2", ANSWER), (b"P1", EVENT)), [(7, "P2", ANSWER), (7, "P1", EVENT)],
                 0, id="batch-in-its-order"),
    pytest.param(NEWER_BATCH, [], 1, id="newer-batch"),
    pytest.param(JOURNAL_ENCODER.encode(EVENT)[:-3], [], 1, id="truncated-entry"),
    pytest.param(b"\xc1", [], 1, id="garbage"),
    pytest.param(None, [], 1, id="no-value"),
])
def test_a_journal_record_adds_each_of_its_entries_at_its_offset(
        raw: bytes | None, items: list[tuple[int, str, JournalEntry]], unreadable: int) -> None:
    h = History()
    add_journal_records(h, [(3, 7, b"P1", raw)])
    assert h.journal == {3: items}
    assert [u[0] for u in h.unreadable] == ["journal 3/7"] * unreadable


def test_entries_of_a_batch_share_its_offset_between_the_records_around_it() -> None:
    h = History()
    add_journal_records(h, [(0, 0, b"P2", JOURNAL_ENCODER.encode(ANSWER)),
                            (0, 1, b"P1", batch((b"P1", EVENT), (b"P2", ANSWER))),
                            (0, 2, b"P1", JOURNAL_ENCODER.encode(EVENT))])
    assert [(o, k) for o, k, _ in h.journal[0]] == [(0, "P2"), (1, "P1"), (1, "P2"), (2, "P1")]
    assert [k for k, _ in h.entries()] == ["P2", "P1", "P2", "P1"] and h.journal_size == 4


@pytest.fixture(scope="module")
def in_batches(recorded) -> Recorded:
    rec = batched(recorded, 8)
    assert len(rec.journal) < len(recorded.journal) / 2  # mostly batches
    return rec


def test_a_history_of_batches_replays_as_its_entries_one_a_record(recorded, in_batches):
    history = _history(in_batches)
    assert not history.unreadable and history.journal_size == len(recorded.journal)
    shared = [(a[0], a[1], b[1]) for part in history.journal.values()
              for a, b in zip(part, part[1:], strict=False) if a[0] == b[0]]
    assert shared and all(ka != kb for _, ka, kb in shared)
    one, many = replay(_history(recorded), CFG), replay(history, CFG)
    assert many.outcomes == one.outcomes and many.records == one.records
    _, report = replay_history(history, CFG)
    assert report.ok, report.render()
    assert report.journal_entries == len(recorded.journal)


def test_an_export_writes_a_line_per_entry_of_a_batch(recorded, in_batches):
    data = _export(in_batches)
    journal = [json.loads(ln) for ln in data.splitlines() if b'"record":"journal"' in ln]
    assert len(journal) == len(recorded.journal)
    assert json.loads(data.splitlines()[-1])["journal"] == len(recorded.journal)
    by_offset: dict[tuple[int, int], list[str]] = defaultdict(list)
    for line in journal:
        assert "entry" in line, line
        by_offset[(line["partition"], line["offset"])].append(line["key"])
    assert len(by_offset) == len(in_batches.journal)
    for p, o, key, _ in in_batches.journal:
        keys = by_offset[(p, o)]
        assert keys[0] == key.decode() and len(set(keys)) == len(keys)
    # Read back, the file is the history of the topics: the same replay, the same report.
    _, from_file = replay_history(read_export(io.BytesIO(data)), CFG)
    _, direct = replay_history(_history(recorded), CFG)
    a, b = from_file.as_dict(), direct.as_dict()
    a.pop("source"), b.pop("source")
    assert a == b and from_file.ok


def _line(partition: int, offset: int, key: str, entry: JournalEntry | bytes) -> dict:
    """The journal line of one stored entry (`bytes`: as stored; else the current layout)."""
    raw = entry if isinstance(entry, bytes) else JOURNAL_ENCODER.encode(entry)
    return json.loads(journal_line(partition, offset, key.encode(), raw))


@pytest.mark.parametrize(("raw", "expected", "readable"), [
    pytest.param(JOURNAL_ENCODER.encode(EVENT), [_line(2, 9, "P1", EVENT)], True,
                 id="one-entry"),
    pytest.param(answer_entry_v0(ANSWER), [_line(2, 9, "P1", answer_entry_v0(ANSWER))], True,
                 id="one-entry-v0-as-stored"),
    pytest.param(batch((b"P1", EVENT), (b"P2", ANSWER)),
                 [_line(2, 9, "P1", EVENT), _line(2, 9, "P2", ANSWER)], True, id="batch"),
    pytest.param(msgspec.msgpack.encode({"k": "batch", "v": 1, "persons": [b"P1", b"P2"],
                                         "entries": [msgspec.msgpack.decode(event_entry_v0(EVENT)),
                                                     msgspec.to_builtins(ANSWER)]}),
                 [_line(2, 9, "P1", event_entry_v0(EVENT)), _line(2, 9, "P2", ANSWER)], True,
                 id="batch-with-an-old-entry-as-stored"),
    pytest.param(NEWER_BATCH, None, False, id="newer-batch"),
    pytest.param(b"\xc1", None, False, id="garbage"),
    pytest.param(None, None, False, id="no-value"),
])
def test_export_lines_of_a_journal_record(raw: bytes | None, expected: list[dict] | None,
                                          readable: bool) -> None:
    lines, error = journal_lines(2, 9, b"P1", raw)
    assert (error is None) == readable
    got = [json.loads(ln) for ln in lines]
    if expected is None:  # kept whole, as stored, for the reader to report
        (line,) = got
        assert {k: line[k] for k in ("partition", "offset", "key")} == {
            "partition": 2, "offset": 9, "key": "P1"}
        assert line["raw_b64"] == base64.b64encode(raw or b"").decode() and line["error"]
    else:
        assert got == expected


def test_an_unreadable_batch_in_an_export_is_reported_once(recorded):
    rec = _copy(recorded)
    p, o, k, _ = rec.journal[-1]
    rec.journal.append((p, o + 1, k, NEWER_BATCH))
    rec.journal.append((p, o + 2, k, batch((b"P9", EVENT), (b"P8", ANSWER))))
    history = read_export(io.BytesIO(_export(rec)))
    assert len(history.unreadable) == 1 and "upgrade mynapoint" in history.unreadable[0][1]
    assert history.journal_size == len(recorded.journal) + 2


# --- the command ---------------------------------------------------------------------------------


def test_replay_command_exit_codes(recorded, tmp_path, capsys):
    good = tmp_path / "good.jsonl"
    good.write_bytes(_export(recorded))
    assert main(["replay", "--file", str(good)]) == 0
    out = capsys.readouterr().out
    assert "differences: none" in out and "the export's header" in out

    rec = _copy(recorded)
    topic, p, o, key, value = next(r for r in rec.outputs if b'"kind":"grant"' in r[4])
    grant = msgspec.json.decode(value)
    rec.outputs.append((topic, p, 99_999, key, msgspec.json.encode({**grant, "points": 1})))
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(_export(rec))
    assert main(["replay", "--file", str(bad), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["differences"] == {"content_differs": 1}

    assert main(["replay", "--file", str(tmp_path / "absent.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err
    (tmp_path / "junk.jsonl").write_text("hello\n")
    assert main(["replay", "--file", str(tmp_path / "junk.jsonl")]) == 2
    # --config wins over the header's configuration.
    assert main(["replay", "--file", str(good), "--config", str(ROOT / "nope.toml")]) == 2


def test_replay_needs_a_source(monkeypatch, capsys):
    monkeypatch.delenv("MYNAPOINT_BOOTSTRAP", raising=False)
    assert main(["replay"]) == 2
    assert "--file" in capsys.readouterr().err


def test_offline_replay_never_imports_kafka(recorded, tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_bytes(_export(recorded))
    code = (
        "import sys\n"
        "from cli.main import main\n"
        f"rc = main(['replay', '--file', {str(path)!r}, '--json'])\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in "
        "('faust', 'aiokafka', 'rocksdict', 'kafka', 'mode'))\n"
        "print('RESULT', rc, bad, file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert "RESULT 0 []" in out.stderr


@pytest.mark.parametrize("forged", [
    {"kind": ["decision"], "outcome_id": "x", "person_id": "P0000001"},
    {"kind": "decision", "outcome_id": {"id": 1}, "person_id": ["P0000001"]},
    {"kind": "decision", "person_id": "P0000001"},
    {"kind": {"a": 1}},
])
def test_a_published_object_of_the_wrong_shape_is_reported_not_a_crash(recorded, forged):
    # Any JSON object decodes as a published outcome: a list or an object where replay expects a
    # string is a forgery like any other.
    rec = _copy(recorded)
    rec.outputs.append(("mynapoint.decisions", 0, 30_000, b"P0000001", msgspec.json.encode(forged)))
    _, report = replay_history(_history(rec), CFG)
    assert dict(report.differences) == {"unexpected": 1}
    (diff,) = report.examples
    assert "not an outcome replay knows" in diff.detail and diff.published == forged
    assert diff.person_id in (None, "P0000001")
    report.render()


def test_an_export_reads_alike_from_a_file_and_from_its_lines(recorded):
    # Whitespace-only lines (an editor's doing) carry nothing, whichever way the export is passed.
    lines = _export(recorded).split(b"\n")
    spaced = b"\n".join(lines[:3] + [b"   ", b"\t\r"] + lines[3:])
    from_file = read_export(io.BytesIO(spaced))
    from_lines = read_export(spaced.splitlines(keepends=True))
    assert from_file.journal_size == from_lines.journal_size == len(recorded.journal)
    assert from_file.outcomes == from_lines.outcomes


@pytest.mark.parametrize("argv", [["export", "-o", "out.jsonl"], ["rescale", "--to-partitions", "8"]])
def test_commands_that_read_a_broker_ask_for_one(monkeypatch, capsys, argv):
    # Never the worker's default broker: an auditor or an SRE names the one to read.
    monkeypatch.delenv("MYNAPOINT_BOOTSTRAP", raising=False)
    assert main(argv) == 2
    assert "say which broker: --bootstrap HOST:PORT (or MYNAPOINT_BOOTSTRAP)" in \
        capsys.readouterr().err


@pytest.mark.parametrize(("flag", "env", "expected"), [
    ("h:1", {"MYNAPOINT_BOOTSTRAP": "h:2"}, "h:1"),
    (None, {"MYNAPOINT_BOOTSTRAP": "h:2"}, "h:2"),
    (None, {"MYNAPOINT_BOOTSTRAP": ""}, None),
    (None, {}, None),
    ("", {}, None),
])
def test_a_broker_is_the_flag_else_the_environment_never_the_default(flag, env, expected):
    from schemas.settings import flag_or_env

    assert flag_or_env("bootstrap", flag, env) == expected
