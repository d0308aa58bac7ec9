"""`sarcopenia-cds report`, `suppressions list|lift` and `explain`: governance from the store."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from datetime import UTC, date, datetime, timedelta
from typing import Any

from cds_service.config import load_config


def _day(text: str) -> datetime:
    try:
        return datetime.combine(date.fromisoformat(text), datetime.min.time(), tzinfo=UTC)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date YYYY-MM-DD") from exc


def _now() -> datetime:
    """The operator's clock (UTC)."""
    return datetime.now(UTC)


def add_governance_commands(commands: Any) -> None:
    """Register the governance subcommands on the CLI's subparsers."""
    report = commands.add_parser("report", help="the CDS governance report from the configured database")
    report.add_argument("--since", type=_day, required=True, help="first day (YYYY-MM-DD, UTC)")
    report.add_argument("--until", type=_day, default=None, help="last day, included (default: today)")
    report.add_argument("--format", choices=("html", "csv", "json"), default="html")
    report.add_argument("--out", default=None, help="file to write (default: standard output)")

    suppressions = commands.add_parser("suppressions", help="see and lift a patient's suppressions (audited)")
    verbs = suppressions.add_subparsers(dest="verb", required=True)
    listing = verbs.add_parser("list", help="the suppressions in force for a patient")
    listing.add_argument("--patient", required=True, help="the patient's id as the EHR sends it")
    listing.add_argument("--json", action="store_true")
    lift = verbs.add_parser("lift", help="end a patient's suppressions (all, or one finding's)")
    lift.add_argument("--patient", required=True, help="the patient's id as the EHR sends it")
    lift.add_argument("--finding", default=None, help="only suppressions of cards listing this finding code")
    lift.add_argument("--reason", required=True, help="why (recorded in the audit)")
    lift.add_argument("--actor", default=None, help="who lifts (default: cli:<login name>)")

    explain = commands.add_parser("explain", help="what a past hook call fired, from the store")
    explain.add_argument("--hook-instance", required=True)
    explain.add_argument("--json", action="store_true")


def _store(config: dict[str, Any]) -> Any:
    from cds_service.store import Store

    store = Store(config["database"]["url"], config["privacy"]["pseudonym_key"])
    store.migrate()
    return store


def periods(config: dict[str, Any]) -> tuple[dict[str, int], int, int]:
    """The suppression periods the configuration sets."""
    s = config["suppression"]
    return s["override_days"], s["default_override_days"], s["accepted_referral_days"]


def run_governance(args: argparse.Namespace, now: datetime | None = None) -> int:
    """Run one governance command; exit status 0 when it did what was asked."""
    config = load_config()
    now = now or _now()
    store = _store(config)
    actor = getattr(args, "actor", None) or f"cli:{getpass.getuser()}"
    try:
        if args.command == "report":
            from cds_service.governance import build_report, render

            until = (args.until or _day(now.date().isoformat())) + timedelta(days=1)
            if until <= args.since:
                print("sarcopenia-cds report: --until is before --since", file=sys.stderr)
                return 2
            report = build_report(store, args.since, until, retention_days=config["retention"]["days"], now=now)
            text = render(report, args.format)
            store.audit(actor, "report", {"since": args.since.date().isoformat(),
                                          "until": (until - timedelta(days=1)).date().isoformat(),
                                          "format": args.format}, now)
            if args.out:
                with open(args.out, "w", encoding="utf-8") as out:
                    out.write(text)
                print(f"report written to {args.out} ({len(report.rows)} rows, {len(report.alarms)} alarms)",
                      file=sys.stderr)
            else:
                sys.stdout.write(text)
            return 0
        if args.command == "suppressions" and args.verb == "list":
            listed = list_suppressions(store, config, args.patient, now)
            store.audit(actor, "suppressions.list", {"in_force": len(listed["in_force"])}, now)
            if args.json:
                print(json.dumps(listed, indent=2))
            else:
                print(format_suppressions(listed))
            return 0
        if args.command == "suppressions" and args.verb == "lift":
            result = store.lift_suppressions(args.patient, now, *periods(config), actor=actor,
                                             reason=args.reason, finding=args.finding)
            print(f"lift {result.lift_id}: {result.entries} feedback entries no longer hide anything "
                  f"(findings: {', '.join(result.findings) or 'none'}; suggestions: "
                  f"{', '.join(result.suggestions) or 'none'})")
            return 0 if result.entries else 1
        if args.command == "explain":
            calls = store.explain_call(args.hook_instance)
            store.audit(actor, "explain", {"calls": len(calls)}, now)
            if not calls:
                print(f"no call with hookInstance {args.hook_instance} is stored", file=sys.stderr)
                return 1
            print(json.dumps(calls, indent=2) if args.json else format_explain(calls))
            return 0
    finally:
        store.dispose()
    return 2


def list_suppressions(store: Any, config: dict[str, Any], patient_id: str, now: datetime) -> dict[str, Any]:
    """The suppressions in force for a patient (every service and caller) and their lifts."""
    suppression = store.suppressions(patient_id, now, *periods(config))
    return {
        "in_force": [r.as_record() for r in suppression.reasons],
        "lifts": store.lifts(patient_id),
    }


def format_suppressions(listed: dict[str, Any]) -> str:
    lines = []
    if not listed["in_force"]:
        lines.append("no suppression in force")
    for r in listed["in_force"]:
        what = "finding" if r["kind"] == "finding" else "suggestion"
        lines.append(f"{what} {r['target']}: hidden until {r['until']} by feedback {r['feedback']} on card "
                     f"{r['card']} ({r['service']}, {r['reason'] or 'accepted'} at {r['since']})")
    for lift in listed["lifts"]:
        lines.append(f"lifted {lift['lifted_at']} by {lift['actor']} ({lift['finding'] or 'all findings'}, "
                     f"{lift['entries']} entries): {lift['reason']}")
    return "\n".join(lines)


def format_explain(calls: list[dict[str, Any]]) -> str:
    """A past call as text: no patient data (there is none in the record)."""
    lines = []
    for call in calls:
        detail = call["detail"]
        lines.append(f"hookInstance {call['hook_instance']} at {call['called_at']}: {call['service']} "
                     f"({call['hook']}), rule packs {call['pack_version']}, status {call['status']}, "
                     f"{call['duration_ms']} ms")
        fired = detail.get("rules_fired") or []
        lines.append("  rules fired: " + (", ".join(f"{r['rule']} -> {r['finding']}" for r in fired) or "none"))
        unavailable = detail.get("unavailable") or []
        if unavailable:
            reasons = detail.get("unavailable_reasons") or {}
            lines.append("  data unavailable: " + ", ".join(unavailable)
                         + (f" ({', '.join(f'{k}: {v}' for k, v in sorted(reasons.items()))})" if reasons else ""))
        lines.append("  facts unknown for that: " + (", ".join(detail.get("unknown_facts") or []) or "none"))
        lines.append("  findings undecided: " + (", ".join(detail.get("undetermined") or []) or "none"))
        suppressed = detail.get("suppressed") or []
        lines.append("  suppressed by earlier feedback: " + (", ".join(
            f"{s['target']} (card {s['card']}, {s['reason'] or 'no code'} at {s['since']}, until {s['until']})"
            for s in suppressed) or "none"))
        for card in call["cards"]:
            notes = ", ".join(f"{n['outcome']}{' ' + n['reason'] if n['reason'] else ''} at {n['at']}"
                              f"{' (lifted)' if n['lifted'] else ''}" for n in card["feedback"])
            lines.append(f"  card {card['uuid']}: {card['primary']} (lists {', '.join(card['findings'])})"
                         f"{'; feedback: ' + notes if notes else ''}")
        if detail.get("error"):
            lines.append(f"  answered with an error: {detail['error']}")
    return "\n".join(lines)
