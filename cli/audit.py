"""The auditor's commands: `mynapoint replay`, `export`, `explain`, `audit` and `whatif`.

Argparse wiring is in `cli.audit_args`. Offline sources (an export file, an events or
outcomes file) never import aiokafka; `--bootstrap` loads `clients.history` when it runs.

Exit codes: 0 done (replay: no differences), 1 replay found differences / explain found no such
person, 2 the command could not run (unreadable file, broker unreachable, invalid config).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tomllib
from pathlib import Path
from typing import Any

from schemas.codec import event_lines
from schemas.settings import BadSetting, flag_or_env, from_env, usable_app_id, usable_bootstrap
from streams.audit.export import (
    ExportError,
    History,
    SubsetError,
    journal_partitions_of,
    keep_subset,
    make_subset,
    other_rules,
    parse_partitions,
    read_export,
)
from streams.core.config import ConfigError, RulesConfig, build_config, load_config


class CommandError(Exception):
    """Something that stops a command; the message says what to do."""


def _err(cmd: str, msg: str) -> int:
    print(f"mynapoint {cmd}: {msg}", file=sys.stderr)
    return 2


def _config_path(args: argparse.Namespace) -> str | None:
    return getattr(args, "config", None) or from_env("config")


def _resolve_config(args: argparse.Namespace, history: History | None) -> tuple[RulesConfig, str]:
    """--config (or $MYNAPOINT_CONFIG), else the configuration stored in the export's header,
    else the defaults of RULES.md. Returns the config and where it came from."""
    return _config_from(_config_path(args), history)


def _config_from(path: str | None, history: History | None) -> tuple[RulesConfig, str]:
    """The file at `path`, else the export header's configuration, else the defaults."""
    try:
        if path:
            return load_config(path), path
        header = history.header if history is not None else {}
        text = header.get("config_toml") if isinstance(header, dict) else None
        if isinstance(text, str):
            cfg = build_config(tomllib.loads(text))
            return cfg, "the export's header"
        return load_config(None), "defaults (RULES.md)"
    except (ConfigError, tomllib.TOMLDecodeError) as exc:
        raise CommandError(str(exc)) from None


def _read_file_history(path: str) -> History:
    try:
        if path == "-":
            return read_export(sys.stdin.buffer, "<stdin>")
        with open(path, "rb") as f:
            return read_export(f, path)
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ExportError as exc:
        raise CommandError(str(exc)) from None


def _partitions(args: argparse.Namespace) -> frozenset[int] | None:
    spec = getattr(args, "partitions", None)
    if spec is None:
        return None
    try:
        return parse_partitions(spec)
    except SubsetError as exc:
        raise CommandError(str(exc)) from None


def _bootstrap(args: argparse.Namespace) -> str:
    """The command's brokers (--bootstrap, else MYNAPOINT_BOOTSTRAP), if it can use them."""
    try:
        return usable_bootstrap(flag_or_env("bootstrap", getattr(args, "bootstrap", None)))
    except BadSetting as exc:
        raise CommandError(str(exc)) from None


def _app_id(args: argparse.Namespace) -> str:
    """The workers' app (--app-id, else MYNAPOINT_APP_ID, else the default), if it can be one."""
    try:
        return usable_app_id(getattr(args, "app_id", None))
    except BadSetting as exc:
        raise CommandError(str(exc)) from None


def _read_kafka_history(args: argparse.Namespace, *, journal: bool = True,
                        outcomes: bool = True, tables: bool = True,
                        person: str | None = None) -> History:
    from clients.connect import run_blocking
    from clients.history import HistoryError, client_kwargs_from_env, read_history

    bootstrap = _bootstrap(args)
    # The app names the persons table only; a flag given anyway is checked all the same.
    app_id = _app_id(args) if tables or getattr(args, "app_id", None) is not None else None
    try:
        return run_blocking(read_history(
            bootstrap, app_id=app_id, journal=journal, outcomes=outcomes,
            tables=tables, partitions=_partitions(args), person=person,
            timeout=args.timeout, **client_kwargs_from_env()))
    except HistoryError as exc:
        raise CommandError(str(exc)) from None


def _latest_rules_versions(args: argparse.Namespace) -> dict[str, int]:
    from clients.connect import run_blocking
    from clients.history import HistoryError, client_kwargs_from_env, latest_rules_versions

    bootstrap = _bootstrap(args)
    try:
        return run_blocking(latest_rules_versions(bootstrap, timeout=args.timeout,
                                                  **client_kwargs_from_env()))
    except HistoryError as exc:
        raise CommandError(str(exc)) from None


def _source_given(args: argparse.Namespace, *names: str) -> str:
    given = [n for n in names if getattr(args, n, None)]
    if len(given) > 1:
        flags = " and ".join("--" + n.replace("_", "-") for n in given)
        raise CommandError(f"give one source, not {flags}")
    if given:
        return given[0]
    if "bootstrap" in names and flag_or_env("bootstrap", None):
        return "bootstrap"
    flags = ", ".join("--" + n.replace("_", "-") for n in names)
    raise CommandError(f"say where the history is: one of {flags}")


def _history(args: argparse.Namespace, *, outcomes: bool = True, tables: bool = True) -> History:
    source = _source_given(args, "file", "bootstrap")
    if source == "file":
        history = _read_file_history(args.file)
        only = _partitions(args)
        if only is None:
            return history
        try:
            return keep_subset(history, make_subset(only, journal_partitions_of(history.header)))
        except SubsetError as exc:
            raise CommandError(str(exc)) from None
    return _read_kafka_history(args, outcomes=outcomes, tables=tables)


def _emit(text: str) -> None:
    """Prints to stdout; a reader that went away (`| head`) is not an error of ours."""
    try:
        print(text)
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _print_json(obj: Any) -> None:
    _emit(json.dumps(obj, ensure_ascii=False, indent=2, default=str))


# --- replay --------------------------------------------------------------------------------------


def cmd_replay(args: argparse.Namespace) -> int:
    from streams.audit.replay import replay_history

    if getattr(args, "combine", None):
        return _combine(args.combine)
    try:
        history = _history(args, tables=not args.no_tables)
        cfg, cfg_from = _resolve_config(args, history)
    except CommandError as exc:
        return _err("replay", str(exc))
    if not args.no_tables and history.records is None:
        app = history.header.get("app_id") or getattr(args, "app_id", None) or from_env("app_id")
        print(f"mynapoint replay: no persons table to compare (its changelog "
              f"{app}-persons-changelog was not found or not exported): is --app-id right?",
              file=sys.stderr)
    _, report = replay_history(history, cfg, tables=not args.no_tables,
                               max_examples_per_kind=args.examples)
    if args.json:
        out = report.as_dict()
        out["config"] = cfg_from
        _print_json(out)
    else:
        _emit(report.render() + f"\n\n(configuration: {cfg_from})")
    return 0 if report.ok else 1


def _combine(paths: list[str]) -> int:
    from streams.audit.replay import combine_reports

    reports = []
    for path in paths:
        try:
            obj = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return _err("replay", f"cannot read the report {path}: {exc}: give the output of "
                        "`mynapoint replay --json --partitions ...`")
        if not isinstance(obj, dict) or "journal_entries" not in obj:
            return _err("replay", f"{path} is not a `mynapoint replay --json` report")
        reports.append(obj)
    combined = combine_reports(reports)
    _print_json(combined)
    part = combined["partitions"]
    if not part["complete"]:
        print(f"mynapoint replay: warning: the reports cover journal partitions {part['only']} of "
              f"{part['of']} (overlapping: {part['overlapping']}): not the whole history once",
              file=sys.stderr)
    return 0 if combined["ok"] else 1


# --- export --------------------------------------------------------------------------------------


def export_rules_note(versions: dict[str, int], version: str, source: str) -> str | None:
    """What export says about the rules versions the exported outcomes carry (`versions`), given
    the one its header records (`version`, from `source`); None when they all carry it."""
    shown = other_rules(versions, version)
    if not shown:
        return None
    if version not in versions:
        # The header records these rules, and replay, explain and whatif take them from it.
        return (f"warning: the exported outcomes carry rules version(s) {shown}, not {version}, "
                f"which this file records from {source}: export again with the configuration "
                "the workers run with (--config)")
    # The rules changed during the history: no single configuration reproduces all of it.
    return (f"note: besides {version} ({versions[version]:,}), which this file records, the "
            f"exported outcomes carry rules version(s) {shown}: the rules changed during this "
            "history, and replay counts the outcomes of the others as differences")


def cmd_export(args: argparse.Namespace) -> int:
    from clients.connect import run_blocking
    from clients.history import HistoryError, client_kwargs_from_env, export_history

    path = _config_path(args)
    try:
        bootstrap = _bootstrap(args)
        app_id = _app_id(args)
        cfg, source = _resolve_config(args, None)
        config_toml = Path(path).read_text(encoding="utf-8") if path else None
        partitions = _partitions(args)
    except CommandError as exc:
        return _err("export", str(exc))
    target = Path(args.output)
    tmp = target.with_name(target.name + ".part")
    try:
        with open(tmp, "wb") as out:
            counts = run_blocking(export_history(
                bootstrap, out, rules_version=cfg.version, config_toml=config_toml,
                app_id=app_id, tables=not args.no_tables, partitions=partitions,
                timeout=args.timeout,
                **client_kwargs_from_env()))
        tmp.replace(target)
    except OSError as exc:
        return _err("export", f"cannot write {args.output}: {exc.strerror or exc}")
    except HistoryError as exc:
        tmp.unlink(missing_ok=True)
        return _err("export", str(exc))
    tables = f", {counts.table:,} persons table records" if counts.tables else \
        " (no persons table: its changelog was not found)" if not args.no_tables else ""
    print(f"mynapoint export: wrote {target}: {counts.journal:,} journal entries, "
          f"{counts.outcomes:,} outcome records{tables}; rules {cfg.version}", file=sys.stderr)
    said = export_rules_note(counts.rules_versions, cfg.version, source)
    if said:
        print(f"mynapoint export: {said}", file=sys.stderr)
    if counts.unreadable:
        print(f"mynapoint export: warning: {counts.unreadable:,} stored value(s) cannot be read by "
              "this version (kept as stored; `replay` reports them as unreadable)", file=sys.stderr)
    if counts.deleted:
        gone = ", ".join(f"partition {p}: the first {n:,}" for p, n in counts.deleted.items())
        print(f"mynapoint export: warning: the broker no longer holds the start of the journal "
              f"({gone} records, removed by retention or DeleteRecords): the file holds the "
              "rest, and a replay of it cannot match what was decided. The journal must keep "
              "every record (retention.ms=-1: docs/RUNBOOK.md, \"Topic settings\")",
              file=sys.stderr)
    return 0


# --- explain -------------------------------------------------------------------------------------


def cmd_explain(args: argparse.Namespace) -> int:
    from schemas.events import valid_person_id
    from streams.audit.explain import as_dict, explain_events, explain_history, render

    if not valid_person_id(args.person):
        # Not echoed: a 12-digit value may be a My Number (seed 003), which must not be shown back.
        return _err("explain", "PERSON is not a person_id: give the person's opaque id, 1-64 of "
                    "[A-Za-z0-9_-] (CONTRACT.md), never a 12-digit number such as a My Number "
                    "(個人番号)")
    try:
        source = _source_given(args, "file", "bootstrap", "events")
        if source == "events":
            cfg, _ = _resolve_config(args, None)
            expl = explain_events(args.person, _read_lines(args.events), cfg, source=args.events)
        else:
            history = (_read_file_history(args.file) if source == "file"
                       else _read_kafka_history(args, tables=False, person=args.person))
            cfg, _ = _resolve_config(args, history)
            expl = explain_history(args.person, history, cfg)
    except CommandError as exc:
        return _err("explain", str(exc))
    if args.json:
        _print_json(as_dict(expl))
    else:
        _emit(render(expl, args.lang))
    return 0 if expl.found else 1


def _read_lines(path: str) -> list[bytes]:
    try:
        if path == "-":
            return list(event_lines(sys.stdin.buffer))
        with open(path, "rb") as f:
            return list(event_lines(f))
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from None


# --- audit ---------------------------------------------------------------------------------------


def cmd_audit(args: argparse.Namespace) -> int:
    import msgspec

    from streams.audit.totals import Audit

    audit = Audit()
    try:
        source = _source_given(args, "file", "bootstrap", "outcomes")
        if source == "outcomes":
            for line in _read_lines(args.outcomes):
                if not line.strip():
                    continue
                try:
                    obj = msgspec.json.decode(line)
                except msgspec.DecodeError:
                    obj = None
                audit.observe(obj if isinstance(obj, dict) else None)
        else:
            history = (_read_file_history(args.file) if source == "file"
                       else _read_kafka_history(args, journal=False, tables=False))
            audit.observe_all(p.outcome for p in history.outcomes)
    except CommandError as exc:
        return _err("audit", str(exc))
    if args.json:
        _print_json(audit.as_dict())
    else:
        _emit(audit.render())
    return 0


# --- whatif --------------------------------------------------------------------------------------


def cmd_whatif(args: argparse.Namespace) -> int:
    from clients.history import RULES_SAMPLE
    from devtools.progress import Progress
    from streams.audit.whatif import whatif_history

    try:
        new = load_config(args.config)
    except ConfigError as exc:
        return _err("whatif", str(exc))
    baseline_path = args.baseline or from_env("config")
    try:
        source = _source_given(args, "file", "bootstrap", "events")
        if source == "events":
            baseline, baseline_from = _config_from(baseline_path, None)
            result = _whatif_events_file(args.events, baseline, new, args.top)
        else:
            history = (_read_file_history(args.file) if source == "file"
                       else _read_kafka_history(args, outcomes=False, tables=False))
            # The recorded rules: --baseline, else the export's header, else $MYNAPOINT_CONFIG.
            baseline, baseline_from = _config_from(args.baseline, history)
            if not args.baseline and baseline_from.startswith("defaults") and baseline_path:
                baseline, baseline_from = _config_from(baseline_path, None)
            # The topics' outcomes are not read whole: the last decisions tell the rules.
            latest = _latest_rules_versions(args) if source == "bootstrap" else None
            progress = Progress(history.journal_size, "journal entries", quiet_off_tty=True)
            result = whatif_history(history, baseline, new, progress=progress.show, top=args.top)
            progress.close()
            if latest is not None:
                result.published_versions = latest
                result.versions_of = (f"the last {RULES_SAMPLE} decisions of each partition "
                                      "of the decisions topic")
    except CommandError as exc:
        return _err("whatif", str(exc))
    result.baseline_from = baseline_from
    result.new_from = args.config
    if args.json:
        _print_json(result.as_dict())
    else:
        _emit(result.render())
    return 0


def _whatif_events_file(path: str, baseline: RulesConfig, new: RulesConfig, top: int) -> Any:
    """An events file, streamed line by line (the bar counts bytes read)."""
    from devtools.progress import Progress
    from streams.audit.whatif import whatif_events

    try:
        f = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        size = os.fstat(f.fileno()).st_size if path != "-" else 0
        progress = Progress(size, "bytes", quiet_off_tty=True) if size else None
        read = [0]

        def counted() -> Any:
            for line in f:
                read[0] += len(line)
                yield line

        def show(_n: int) -> None:
            if progress is not None:
                progress.show(read[0])

        result = whatif_events(event_lines(counted()), baseline, new, source=path, progress=show, top=top)
        if progress is not None:
            progress.close()
        return result
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from None
    finally:
        if f is not sys.stdin.buffer:
            f.close()
