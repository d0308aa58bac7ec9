"""`rules diff`: what override packs change against the packs they build on, for sign-off."""

from __future__ import annotations

import json

from .compile import Compiler
from .diagnostics import Collector
from .load import read_sources, resolve_files

# sections shown as texts and codes (old → new at every changed leaf), in this order
TEXT_SECTIONS = (
    ("suggestions", "Suggestions"),
    ("links", "Links"),
    ("override_reasons", "Override reasons"),
    ("findings", "Finding displays"),
    ("profiles", "Profiles"),
    ("ct_cutoff_sets", "CT cut-off sets"),
    ("facts", "Facts"),
    ("conditions", "Named conditions"),
)


def merged(files) -> Compiler:
    """The packs' definitions merged as the loader merges them (no compilation)."""
    out = Collector()
    compiler = Compiler(read_sources(files, out), out)
    compiler.merge()
    return compiler


def diff_text(paths, locale: str = "en") -> str:
    """Every threshold, code and text that the override files in `paths` change against the
    packs they build on (the bundled packs unless `paths` names others first), old → new, with
    the reference of each side. The packs must load (validate them first)."""
    after_files = resolve_files(paths)
    before_files = [f for f in after_files if f not in set(_override_files(paths, after_files))]
    before, after = merged(before_files), merged(after_files)
    version = lambda c: "+".join(f"{p}@{m['version']}" for p, m in c.packs.items())  # noqa: E731
    lines = [f"Rule set {version(before)} → {version(after)}", ""]
    body: list[str] = []
    body += _thresholds(before, after)
    body += _codes(before, after)
    body += _rules(before, after, locale)
    for section, title in TEXT_SECTIONS:
        body += _section(before, after, section, title)
    body += _references(before, after)
    if not body:
        body = ["No threshold, code or text is changed."]
    return "\n".join(lines + body).rstrip() + "\n"


def _override_files(paths, files):
    """The files that `paths` names (not the packs they are loaded on top of)."""
    from .load import BUNDLED_NAME, is_bundled, pack_files

    named = pack_files([p for p in paths if str(p) != BUNDLED_NAME])
    return [f for f in named if not is_bundled(f)]


def _where(d) -> str:
    return f"{d.src.file}:{d.src.locate(d.path, False)[0]}"


def _cite(c: Compiler, ref: str | None) -> str:
    if not ref:
        return "no source"
    d = c.defs["references"].get(ref)
    if d is None:
        return ref
    short = d.data.get("short")
    return f"{ref} ({short})" if short else f"{ref} ({d.data['citation']})"


def _rows(data) -> dict[str, tuple]:
    """A parameter as {'profile ewgsop2, male': (value, source)} rows (bands one row each)."""
    selector = "profiles" if "profiles" in data else "ct_cutoffs" if "ct_cutoffs" in data else None
    what = {"profiles": "profile", "ct_cutoffs": "CT set"}.get(selector or "")
    specs = [("", data)] if selector is None else [(f"{what} {k}", v) for k, v in data[selector].items()]
    out: dict[str, tuple] = {}
    for prefix, spec in specs:
        source = spec.get("source")
        if "value" in spec:
            out[prefix or "value"] = (spec["value"], source)
        for sex in ("male", "female"):
            value = spec.get(sex)
            label = ", ".join(x for x in (prefix, sex) if x)
            if isinstance(value, dict):
                for band in value["bands"]:
                    cond = f"{value['by']} < {band['below']}" if "below" in band else "otherwise"
                    out[f"{label}, {cond}"] = (band["value"], source)
            elif value is not None:
                out[label] = (value, source)
    return out


def _thresholds(before: Compiler, after: Compiler) -> list[str]:
    out = []
    for name, d in after.defs["parameters"].items():
        old = before.defs["parameters"].get(name)
        if old is not None and old.pack == d.pack:
            continue
        unit = d.data["unit"]
        new_rows = _rows(d.data)
        old_rows = _rows(old.data) if old is not None else {}
        head = f"  {name} [{unit}]" + ("" if old is None else "") + f"  ({d.pack}, {_where(d)})"
        changed = []
        if old is not None and old.data["unit"] != unit:
            changed.append(f"    unit: {old.data['unit']} → {unit}")
        for key in list(old_rows) + [k for k in new_rows if k not in old_rows]:
            was, now = old_rows.get(key), new_rows.get(key)
            if was == now:
                continue
            left = "—" if was is None else f"{_num(was[0])}"
            right = "(removed)" if now is None else f"{_num(now[0])}"
            changed.append(f"    {key}: {left} → {right}")
            changed.append(
                "      source: "
                + (f"{_cite(before, was[1])} → " if was is not None else "")
                + (_cite(after, now[1]) if now is not None else "—")
            )
        same = [k for k in new_rows if old_rows.get(k) == new_rows[k]]
        if same:
            changed.append(f"    unchanged: {'; '.join(same)}")
        if old is None:
            head += "  new"
        out += [head] + changed
    return ["Thresholds (parameters)", *out, ""] if out else []


def _num(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _codes(before: Compiler, after: Compiler) -> list[str]:
    out = []
    for alias, d in after.defs["code_systems"].items():
        old = before.defs["code_systems"].get(alias)
        if old is None or old.pack != d.pack:
            was = f"{old.data} → " if old is not None else ""
            out.append(f"  code system {alias}: {was}{d.data}  ({d.pack}, {_where(d)})")
    for name, defs in after.value_set_defs.items():
        known = {id(x.data) for x in before.value_set_defs.get(name, [])}
        added = [x for x in defs if x.pack not in {b.pack for b in before.value_set_defs.get(name, [])}]
        if not added or all(id(x.data) in known for x in added):
            continue
        status = "extended" if name in before.value_set_defs else "new"
        for x in added:
            out.append(f"  value set {name} ({status} by {x.pack}, {_where(x)}):")
            for entry in x.data:
                systems = entry["system"] if isinstance(entry["system"], list) else [entry["system"]]
                system = ", ".join(after.system(s) for s in systems)
                codes = (
                    entry.get("code") or ", ".join(entry.get("codes", []))
                    or (f"prefix {entry['prefix']}" if "prefix" in entry else "")
                    or (f"range {entry['range'][0]}–{entry['range'][1]}" if "range" in entry else "")
                )
                out.append(f"    + {system} {codes}")
    return ["Codes (value sets and code systems)", *out, ""] if out else []


def _rules(before: Compiler, after: Compiler, locale: str) -> list[str]:
    out = []
    base = {d.name: d for d in before.rule_defs}
    for d in after.rule_defs:
        old = base.get(d.name)
        if old is not None and old.pack == d.pack:
            continue
        if old is None:
            out.append(f"  rule {d.name} (new in {d.pack}, {_where(d)}): finding {d.data['finding']}")
            out += [f"    {line}" for line in _leaves(d.data, ())]
            continue
        out.append(f"  rule {d.name} (replaced by {d.pack}, {_where(d)})")
        out += [f"    {line}" for line in _changes(old.data, d.data, ())]
    return ["Rules and card texts", *out, ""] if out else []


def _section(before: Compiler, after: Compiler, section: str, title: str) -> list[str]:
    out = []
    for name, d in after.defs[section].items():
        old = before.defs[section].get(name)
        if old is not None and old.pack == d.pack:
            continue
        if old is None:
            out.append(f"  {name} (new in {d.pack}, {_where(d)})")
            out += [f"    {line}" for line in _leaves(d.data, ())]
        else:
            changes = _changes(old.data, d.data, ())
            out.append(f"  {name} (replaced by {d.pack}, {_where(d)})"
                       + ("" if changes else ": unchanged"))
            out += [f"    {line}" for line in changes]
    return [title, *out, ""] if out else []


def _references(before: Compiler, after: Compiler) -> list[str]:
    out = []
    for name, d in after.defs["references"].items():
        old = before.defs["references"].get(name)
        if old is None:
            out.append(f"  {name} (new in {d.pack}): {d.data['citation']}")
        elif old.pack != d.pack and old.data != d.data:
            out.append(f"  {name} (replaced by {d.pack}): {old.data['citation']} → {d.data['citation']}")
    return ["References", *out, ""] if out else []


def _path(path) -> str:
    return ".".join(str(p) for p in path) or "(whole)"


def _show(value) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _leaves(data, path) -> list[str]:
    if isinstance(data, dict) and data:
        return [line for k, v in data.items() for line in _leaves(v, path + (k,))]
    return [f"{_path(path)}: {_show(data)}"]


def _changes(old, new, path) -> list[str]:
    """Every leaf that differs, as 'path: old → new' (lists compared whole)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in list(old) + [k for k in new if k not in old]:
            if key not in new:
                shown = _show(old[key])
                shown = shown if len(shown) <= 160 else shown[:159] + "…"
                out.append(f"{_path(path + (key,))}: {shown} → (removed)")
            elif key not in old:
                out += [line.replace(": ", ": (none) → ", 1) for line in _leaves(new[key], path + (key,))]
            else:
                out += _changes(old[key], new[key], path + (key,))
        return out
    if old == new:
        return []
    return [f"{_path(path)}: {_show(old)} → {_show(new)}"]
