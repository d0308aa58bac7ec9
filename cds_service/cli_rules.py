"""The `rules` sub-commands: validate, test, explain and docs (exit 0 when all is well)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

EXIT_OK, EXIT_ERRORS, EXIT_USAGE = 0, 1, 2


def add_rules_commands(subparsers) -> argparse.ArgumentParser:
    """Add `rules {validate,test,explain,docs}` to an argparse subparsers object."""
    rules = subparsers.add_parser("rules", help="validate, test, explain and document rule packs")
    sub = rules.add_subparsers(dest="rules_command", required=True)
    validate = sub.add_parser("validate", help="check rule packs; print every diagnostic")
    validate.add_argument("paths", nargs="*", help="pack files or folders (default: bundled packs)")
    test = sub.add_parser("test", help="run the packs' YAML test cases")
    test.add_argument(
        "paths", nargs="*", help="pack folders or test files (default: bundled packs)"
    )
    test.add_argument("--packs", nargs="*", help="pack files to load instead of the bundled packs")
    explain = sub.add_parser("explain", help="evaluate a bundle and print a readable trace")
    explain.add_argument(
        "--hook", required=True, choices=["patient-view", "order-select", "order-sign"]
    )
    explain.add_argument(
        "--bundle",
        required=True,
        help="FHIR Bundle JSON, a list of resources, or {resources, orders, context}",
    )
    explain.add_argument(
        "--packs", nargs="*", help="pack files or folders (default: bundled packs)"
    )
    explain.add_argument("--profile", default="ewgsop2")
    explain.add_argument("--ct-cutoffs", default=None)
    explain.add_argument("--locale", default="en")
    explain.add_argument("--now", default=None, help="ISO date-time (default: current time)")
    explain.add_argument("--json", action="store_true", help="print the evaluation as JSON")
    docs = sub.add_parser("docs", help="Markdown table of every rule, threshold, unit and source")
    docs.add_argument("--packs", nargs="*", help="pack files or folders (default: bundled packs)")
    docs.add_argument("--locale", default="en")
    rules.set_defaults(func=run_rules)
    return rules


def run_rules(args, out=None, err=None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    handler = {"validate": _validate, "test": _test, "explain": _explain, "docs": _docs}[
        args.rules_command
    ]
    return handler(args, out, err)


def _load(paths, err):
    from cds_service.engine import PackErrors, load_ruleset

    try:
        return load_ruleset(paths or None)
    except PackErrors as exc:
        for error in exc.errors:
            print(error, file=err)
        print(f"{len(exc.errors)} error(s)", file=err)
        return None


def _validate(args, out, err) -> int:
    ruleset = _load(args.paths, err)
    if ruleset is None:
        return EXIT_ERRORS
    print(
        f"ok: {ruleset.version} — {len(ruleset.rule_sources)} rules ({len(ruleset.rules)} cases), "
        f"{len(ruleset.facts)} facts, "
        f"{len(ruleset.params)} parameters, hooks {', '.join(ruleset.hooks)}",
        file=out,
    )
    return EXIT_OK


def _test(args, out, err) -> int:
    from cds_service.engine.testcases import pack_root_of
    from cds_service.engine.testcases import CaseError, case_files, read_cases, run_case

    files = case_files(args.paths)
    if not files:
        print("no test files found (expected <pack>/tests/*.yaml)", file=err)
        return EXIT_ERRORS
    passed = failed = 0
    cache = {}
    for path in files:
        if args.packs:
            key = tuple(args.packs)
        else:
            root = pack_root_of(path)
            from cds_service.engine.load import BUNDLED

            key = None if str(root.resolve()).startswith(str(BUNDLED.resolve())) else (str(root),)
        if key not in cache:
            cache[key] = _load(list(key) if key else None, err)
        ruleset = cache[key]
        if ruleset is None:
            return EXIT_ERRORS
        try:
            cases = read_cases(path)
        except CaseError as exc:
            print(f"FAIL {path}: rule_test_error: {exc}", file=out)
            failed += 1
            continue
        for case in cases:
            try:
                failures = run_case(ruleset, case)
            except CaseError as exc:
                failures = [f"rule_test_error: {exc}"]
            if failures:
                failed += 1
                print(f"FAIL {case.file}:{case.line}: {case.name}", file=out)
                for f in failures:
                    print(f"     {f}", file=out)
            else:
                passed += 1
    print(f"{passed} passed, {failed} failed", file=out)
    return EXIT_OK if failed == 0 else EXIT_ERRORS


def _explain(args, out, err) -> int:
    from cds_service.engine import EngineSettings
    from cds_service.engine.explain import bundle_resources, explain_text

    ruleset = _load(args.packs, err)
    if ruleset is None:
        return EXIT_ERRORS
    try:
        data = json.loads(Path(args.bundle).read_text(encoding="utf-8"))
        resources, orders, context = bundle_resources(data)
    except (OSError, ValueError) as exc:
        print(f"cannot read {args.bundle}: {exc}", file=err)
        return EXIT_USAGE
    if "patientId" not in context:
        patient = next((r for r in resources if r.get("resourceType") == "Patient"), None)
        if patient and patient.get("id"):
            context["patientId"] = patient["id"]
    now = (
        datetime.now(timezone.utc)
        if not args.now
        else datetime.fromisoformat(args.now.replace("Z", "+00:00"))
    )
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    # no --ct-cutoffs: the profile's default_ct_cutoffs in the packs, as the engine resolves it
    ct = args.ct_cutoffs or ruleset.default_ct_cutoffs(args.profile)
    settings = EngineSettings(profile=args.profile, ct_cutoffs=ct, locale=args.locale)
    evaluation = ruleset.evaluate(
        resources,
        hook=args.hook,
        context=context,
        orders=orders,
        now=now,
        settings=settings,
        trace=True,
    )
    if args.json:
        json.dump(
            {
                "findings": [f.__dict__ for f in evaluation.findings],
                "cards": evaluation.cards,
                "data_quality": evaluation.data_quality,
                "trace": evaluation.trace,
            },
            out,
            indent=2,
            ensure_ascii=False,
            default=str,
        )
        out.write("\n")
    else:
        out.write(explain_text(ruleset, evaluation, args.hook, settings))
    return EXIT_OK


def _docs(args, out, err) -> int:
    from cds_service.engine.docs import rules_markdown

    ruleset = _load(args.packs, err)
    if ruleset is None:
        return EXIT_ERRORS
    out.write(rules_markdown(ruleset, args.locale))
    return EXIT_OK


def main(argv=None) -> int:
    """Stand-alone entry (`python -m cds_service.cli_rules rules validate …`) for use before wiring."""
    parser = argparse.ArgumentParser(prog="sarcopenia-cds")
    add_rules_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return run_rules(args)


if __name__ == "__main__":
    raise SystemExit(main())
