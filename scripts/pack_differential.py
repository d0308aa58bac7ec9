"""Differential check of a rule-pack (or engine) rewrite: the cards of an old commit vs this tree.

Usage (from the repository root):  python scripts/pack_differential.py 24f7e2e
Exports the old commit with `git archive` into a temporary folder and, with each tree's own engine
and bundled packs (one subprocess each), evaluates every patient of tests/patients and
cds_service/demo/patients on every hook (draft orders of the patient's orders files, and none),
profile, CT cut-off set (and none) and locale, at two moments, with each resource type (and all of
them) unavailable, traced, and with each finding suppressed; then compares the cards, audit
records, findings with their evidence and rule (variant ids such as `…-1-grip-1-palliative` are
compared by the rule id they were expanded from), undetermined findings, data quality and errors,
with UUIDs masked. Exit 0 when everything is identical.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOW = "2026-11-28T12:00:00Z"
LATER = "2027-03-01T12:00:00Z"
AXIS = re.compile(r"-(\d+)-([a-z][a-z-]*?)(?=-\d+-|$)")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _base_id(rule_id: str) -> str:
    m = AXIS.search(rule_id)
    return rule_id if not m else rule_id[: m.start()]


def _resources(path: Path) -> list[dict]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return [e["resource"] for e in data["entry"]] if "entry" in data else data


def _clean(x: dict) -> dict:
    if "sent" in x:  # suggestion UUID -> key: keep the keys in order
        x["sent"] = [dict(s, suggestions=list(s["suggestions"].values())) for s in x["sent"]]
    return json.loads(UUID.sub("UUID", json.dumps(x, sort_keys=True, ensure_ascii=False)))


def dump(tree: Path) -> dict:
    """Every evaluation with the engine and packs of `tree` (imported first on sys.path)."""
    sys.path.insert(0, str(tree))
    from cds_service.engine import EngineSettings, load_ruleset
    from cds_service.engine.evaluate import Suppression

    rs = load_ruleset([str(tree / "rules")])
    out = {}
    for folder in (ROOT / "tests" / "patients", ROOT / "cds_service" / "demo" / "patients"):
        for path in sorted(folder.glob("*.json")):
            res = _resources(path)
            pid = next(r for r in res if r["resourceType"] == "Patient")["id"]
            types = sorted({r["resourceType"] for r in res})
            orders_dir = folder / "orders"
            order_files = (
                sorted(orders_dir.glob(path.stem + "-*.json")) if orders_dir.is_dir() else []
            )
            runs = [("patient-view", None)]
            runs += [(h, o) for h in ("order-select", "order-sign") for o in [*order_files, None]]
            for (hook, ofile), profile, ct, loc in itertools.product(
                runs,
                ("ewgsop2", "awgs2019"),
                (None, "martin2013", "prado2008", "zhuang2016"),
                ("en", "zh-CN"),
            ):
                orders = _resources(ofile) if ofile else []
                settings = EngineSettings(profile=profile, ct_cutoffs=ct, locale=loc)
                args = dict(
                    hook=hook,
                    context={"patientId": pid, "userId": "Practitioner/x"},
                    orders=orders,
                    settings=settings,
                )
                unavailable = [()] + ([(t,) for t in types] + [tuple(types)] if loc == "en" else [])
                for unav in unavailable:
                    for now in (NOW,) if unav else (NOW, LATER):
                        ev = rs.evaluate(res, now=now, unavailable=frozenset(unav), **args)
                        key = f"{folder.parent.name}/{path.stem}|{hook}|{ofile.stem if ofile else '-'}|{profile}|{ct}|{loc}|{','.join(unav)}|{now}"
                        out[key] = _clean(
                            {
                                "cards": ev.cards,
                                "sent": ev.sent,
                                "undetermined": ev.undetermined,
                                "findings": [
                                    (f.code, _base_id(f.rule_id), f.evidence) for f in ev.findings
                                ],
                                "dq": ev.data_quality,
                                "errors": ev.errors,
                            }
                        )
                        if unav or now != NOW or loc != "en" or ct not in (None, "martin2013"):
                            continue
                        tr = rs.evaluate(res, now=now, trace=True, **args)
                        out[key + "|traced"] = _clean(
                            {
                                "cards": tr.cards,
                                "findings": [
                                    (f.code, _base_id(f.rule_id), f.evidence) for f in tr.findings
                                ],
                            }
                        )
                        for f in ev.findings:
                            sp = rs.evaluate(
                                res,
                                now=now,
                                suppress=Suppression(findings=frozenset({f.code})),
                                **args,
                            )
                            out[key + "|suppress=" + f.code] = _clean(
                                {"cards": sp.cards, "sent": sp.sent, "suppressed": sp.suppressed}
                            )
    return out


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "--dump":  # the child: one tree's evaluations to a file
        Path(argv[2]).write_text(
            json.dumps(dump(Path(argv[1])), ensure_ascii=False), encoding="utf-8"
        )
        return 0
    if len(argv) not in (1, 3):
        print(__doc__, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        old_tree = Path(tmp) / "old"
        old_tree.mkdir()
        archive = subprocess.run(
            ["git", "archive", argv[0]], cwd=ROOT, capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(old_tree)], input=archive.stdout, check=True)
        results = []
        for name, tree in (("old", old_tree), ("new", ROOT)):
            target = Path(tmp) / f"{name}.json"
            subprocess.run([sys.executable, __file__, "--dump", str(tree), str(target)], check=True)
            results.append(json.loads(target.read_text(encoding="utf-8")))
    old, new = results
    if old.keys() != new.keys():
        print(f"different evaluations: {len(old)} old, {len(new)} new "
              f"({len(old.keys() - new.keys())} only old, {len(new.keys() - old.keys())} only new: "
              "suppression runs follow the findings made)")
    common = [k for k in old if k in new]
    differ = [k for k in common if old[k] != new[k]]
    print(f"{len(common)} evaluations compared; {len(differ)} differ")
    # what a clinician sees change: the findings made and the suggestions sent
    changed = {}
    for key in differ:
        o, n = old[key], new[key]
        what = []
        if [f[0] for f in o.get("findings", [])] != [f[0] for f in n.get("findings", [])]:
            what.append("findings")
        if [x["suggestions"] for x in o.get("sent", [])] != [x["suggestions"] for x in n.get("sent", [])]:
            what.append("suggestions")
        if not what:
            what.append("texts/evidence only")
        changed.setdefault(" + ".join(what), []).append(key)
    for what, keys in sorted(changed.items()):
        print(f"  {len(keys)} differ in {what}")
    for what, keys in sorted(changed.items()):
        if what == "texts/evidence only":
            continue
        print(f"{what}:")
        seen = {}
        for key in keys:
            patient, hook, order, profile = key.split("|")[:4]
            row = (patient, hook, order if order != "-" else "")
            o, n = old[key], new[key]
            change = (
                sorted({f[0] for f in o.get("findings", [])} ^ {f[0] for f in n.get("findings", [])}),
            )
            seen.setdefault(row, set()).add((profile, str(change[0])))
        for (patient, hook, order), changes in sorted(seen.items()):
            print(f"  {patient} {hook} {order}: " + "; ".join(sorted(f"{p} {c}" for p, c in changes)))
    if len(sys.argv) > 2:  # --keys PATTERN: the keys of the changed evaluations matching it
        for what, keys in sorted(changed.items()):
            for key in keys:
                if sys.argv[3] in key and what != "texts/evidence only":
                    o, n = old[key], new[key]
                    print(what, key, [f[0] for f in o.get("findings", [])], "->",
                          [f[0] for f in n.get("findings", [])])
    return 1 if differ or old.keys() != new.keys() else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
