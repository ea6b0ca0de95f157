"""Argparse wiring for the auditor's subcommands: replay, export, explain, audit (issue 4) and
whatif (issue 12).

Importing this module imports no faust, aiokafka or rocksdict: each command loads its
implementation (`cli.audit`) only when it runs, and that loads Kafka only for --bootstrap.
"""

from __future__ import annotations

import argparse
from typing import Any

from cli import Lazy
from schemas.settings import ENV, HOW_MANY, SECONDS

_BOOTSTRAP_HELP = ("read the topics of this Kafka (group-less: running workers are not disturbed; "
                   f"default ${ENV['bootstrap'].var} when no other source is given)")
_FILE_HELP = "read an export file written by `mynapoint export` (offline)"
_CONFIG_HELP = (f"rules configuration TOML the pipeline runs with (default: ${ENV['config'].var}, "
                "else the one stored in the export file, else RULES.md's defaults)")
_APP_ID_HELP = ("the workers' --app-id: names the persons table changelog "
                f"(default: ${ENV['app_id'].var}, else {ENV['app_id'].default})")


def register(sub: Any, lazy: Lazy) -> None:
    """Adds replay, export, explain, audit and whatif."""
    _register_replay(sub, lazy)
    _register_export(sub, lazy)
    _register_explain(sub, lazy)
    _register_audit(sub, lazy)
    _register_whatif(sub, lazy)


_PARTITIONS_HELP = (
    "only the people of these journal partitions, such as 0-3 or 0-3,8: run one replay per "
    "subset on many machines at once and add the reports up (docs/AUDIT.md, \"Replay in "
    "parallel\")")


def _timeout(s: argparse.ArgumentParser) -> None:
    s.add_argument("--timeout", type=SECONDS, default=300.0, metavar="SECONDS",
                   help="give up reading the topics after this long (default 300)")


def _register_replay(sub: Any, lazy: Lazy) -> None:
    s = sub.add_parser(
        "replay",
        help="rebuild every person from the journal and compare with what was published and stored",
        description=(
            "Folds the journal from its first offset into fresh in-memory state with the same "
            "rules, re-derives every outcome and compares them (by outcome_id) with the output "
            "topics, and each person's state with the live persons table (its changelog). Prints "
            "a report; exit 0 when nothing differs, 1 when something does, 2 when it could not "
            "run. Replay a pipeline that has caught up: entries still in flight show as "
            "differences."
        ),
    )
    src = s.add_mutually_exclusive_group()
    src.add_argument("--bootstrap", metavar="HOST:PORT", help=_BOOTSTRAP_HELP)
    src.add_argument("--file", metavar="EXPORT", help=_FILE_HELP)
    s.add_argument("--config", metavar="FILE", help=_CONFIG_HELP)
    s.add_argument("--app-id", help=_APP_ID_HELP)
    s.add_argument("--no-tables", action="store_true",
                   help="do not compare with the persons table")
    s.add_argument("--json", action="store_true", help="print the report as JSON")
    s.add_argument("--examples", type=HOW_MANY, default=3, metavar="N",
                   help="examples shown per kind of difference (default 3)")
    s.add_argument("--partitions", metavar="LIST", help=_PARTITIONS_HELP)
    src.add_argument("--combine", nargs="+", metavar="REPORT.json",
                     help="add up the --json reports of replays of disjoint --partitions subsets "
                     "into the report of the whole (prints JSON; exit 1 if any part differs)")
    _timeout(s)
    s.set_defaults(func=lazy("cli.audit", "cmd_replay"))


def _register_export(sub: Any, lazy: Lazy) -> None:
    s = sub.add_parser(
        "export",
        help="write the recorded history (journal, outcomes, persons table) to one JSONL file",
        description=(
            "Reads the journal, the output topics and the persons table's changelog from their "
            "first offsets (group-less) and writes one JSONL file that `replay --file`, "
            "`explain --file` and `audit --file` read offline. Format: docs/AUDIT.md."
        ),
    )
    s.add_argument("--bootstrap", metavar="HOST:PORT",
                   help=f"Kafka bootstrap servers (default: ${ENV['bootstrap'].var})")
    s.add_argument("-o", "--output", required=True, metavar="FILE", help="the export file to write")
    s.add_argument("--config", metavar="FILE",
                   help="rules configuration the pipeline runs with: stored in the file "
                   f"(default: ${ENV['config'].var}, else RULES.md's defaults)")
    s.add_argument("--app-id", help=_APP_ID_HELP)
    s.add_argument("--no-tables", action="store_true", help="leave out the persons table")
    s.add_argument("--partitions", metavar="LIST", help=_PARTITIONS_HELP)
    _timeout(s)
    s.set_defaults(func=lazy("cli.audit", "cmd_export"))


def _register_explain(sub: Any, lazy: Lazy) -> None:
    s = sub.add_parser(
        "explain",
        help="one person's timeline in plain Japanese and English: decisions, points, status",
        description=(
            "Each event of the person (time in JST, what it was), its decision and reason in plain "
            "words, the points it granted; then points per campaign and what remains to each cap, "
            "the linked service per campaign, the certificate's expiry and whether a renewal wait "
            "is running at the person's last event. Exit 1 when the person has no events."
        ),
    )
    s.add_argument("person", metavar="PERSON", help="the person_id")
    src = s.add_mutually_exclusive_group()
    src.add_argument("--file", metavar="EXPORT", help=_FILE_HELP)
    src.add_argument("--bootstrap", metavar="HOST:PORT", help=_BOOTSTRAP_HELP)
    src.add_argument("--events", metavar="FILE.jsonl",
                     help="a plain events file: decide it offline (as simulate does); - for stdin")
    s.add_argument("--config", metavar="FILE", help=_CONFIG_HELP)
    s.add_argument("--lang", choices=("ja", "en", "both"), default="both",
                   help="language of the explanation (default both)")
    s.add_argument("--json", action="store_true", help="print JSON (both languages)")
    _timeout(s)
    s.set_defaults(func=lazy("cli.audit", "cmd_explain"))


def _register_audit(sub: Any, lazy: Lazy) -> None:
    s = sub.add_parser(
        "audit",
        help="totals by campaign and service, decisions by reason, shared-account alerts, "
        "dead letters",
        description=(
            "Adds up the outcomes: points granted, clawed back and net by campaign and by "
            "service; decisions by type and reason; every account_shared alert with both people; "
            "dead letters by reason. Exact repeats count once."
        ),
    )
    src = s.add_mutually_exclusive_group()
    src.add_argument("--file", metavar="EXPORT", help=_FILE_HELP)
    src.add_argument("--bootstrap", metavar="HOST:PORT", help=_BOOTSTRAP_HELP)
    src.add_argument("--outcomes", metavar="OUTCOMES.jsonl",
                     help="outcomes as `mynapoint simulate` prints them; - for stdin")
    s.add_argument("--json", action="store_true", help="print JSON instead of the summary")
    _timeout(s)
    s.set_defaults(func=lazy("cli.audit", "cmd_audit"))


def _register_whatif(sub: Any, lazy: Lazy) -> None:
    s = sub.add_parser(
        "whatif",
        help="decide the same history under other rules: who gains or loses points, what it costs",
        description=(
            "Decides a recorded history (an export file or the topics: the recorded order, and the "
            "recorded claim answers where they still apply) or an events file (in file order) "
            "under the rules of --config, next to the baseline rules, and reports per campaign "
            "the people whose points change, points before and after, decisions whose reason "
            "changes, cross-person claims answered otherwise, and the people most affected. "
            "docs/AUDIT.md, \"What-if\"."
        ),
    )
    s.add_argument("--config", required=True, metavar="NEW.toml",
                   help="the rules to try (a configuration TOML)")
    src = s.add_mutually_exclusive_group()
    src.add_argument("--file", metavar="EXPORT", help=_FILE_HELP)
    src.add_argument("--bootstrap", metavar="HOST:PORT", help=_BOOTSTRAP_HELP)
    src.add_argument("--events", metavar="FILE.jsonl",
                     help="a plain events file, decided in file order (as simulate does); "
                     "- for stdin")
    s.add_argument("--baseline", metavar="OLD.toml",
                   help="the rules the history was decided with (default: the export file's, "
                   "else $MYNAPOINT_CONFIG, else RULES.md's defaults)")
    s.add_argument("--app-id", help="the workers' --app-id: not needed (what-if reads the "
                   "journal, whose name does not depend on it); one given is checked as replay "
                   "checks it")
    s.add_argument("--top", type=HOW_MANY, default=10, metavar="N",
                   help="how many of the most affected people to list (default 10)")
    s.add_argument("--json", action="store_true",
                   help="print one JSON object: totals, campaigns, reason changes, claims and "
                   "`persons`, every (person, campaign) whose net points differ")
    _timeout(s)
    s.set_defaults(func=lazy("cli.audit", "cmd_whatif"))
