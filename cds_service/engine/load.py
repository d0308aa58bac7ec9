"""load_ruleset(): find pack files, read, schema-check, compile; every error reported at once."""

from __future__ import annotations

from pathlib import Path

from .compile import compile_sources
from .diagnostics import Collector
from .loader import read_source
from .ruleset import RuleSet
from .schema import check_schema

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLED = REPO_ROOT / "rules"


def pack_files(paths=None) -> list[Path]:
    """Files named, and *.yaml / *.yml under folders named (tests/ and schema/ folders excluded)."""
    roots = [BUNDLED] if paths is None else [Path(p) for p in paths]
    files: list[Path] = []
    for root in roots:
        if root.is_dir():
            found = sorted(
                p
                for p in root.rglob("*")
                if p.suffix in (".yaml", ".yml")
                and p.is_file()
                and not {"tests", "schema"} & set(p.relative_to(root).parts[:-1])
            )
            files.extend(found)
        else:
            files.append(root)
    return files


def display_name(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def load_ruleset(paths=None) -> RuleSet:
    """Load and compile packs (None: the bundled packs under <repo>/rules). Raises PackErrors."""
    files = pack_files(paths)
    out = Collector()
    sources = []
    for path in files:
        src, errors = read_source(path, display_name(path))
        out.errors.extend(errors)
        if src is None:
            continue
        if src.data is None:
            continue
        if check_schema(src, out) and not errors:
            sources.append(src)
    out.raise_if_any()
    compiled = compile_sources(sources, out)
    return RuleSet(*compiled, files=[str(f.resolve()) for f in files])
