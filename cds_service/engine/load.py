"""load_ruleset(): find pack files, read, schema-check, compile; every error reported at once."""

from __future__ import annotations

from pathlib import Path

from .compile import compile_sources
from .diagnostics import Collector
from .loader import read_source
from .ruleset import RuleSet
from .schema import check_schema

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLED = REPO_ROOT / "rules"  # package data: site-packages/rules in an installed wheel
BUNDLED_NAME = "bundled"  # how rules.paths and the rules commands name the bundled packs


def _bundled_root() -> Path:
    """The bundled packs' folder, found through the installed package, never the working directory."""
    if (BUNDLED / "sarcopenia").is_dir():
        return BUNDLED
    try:  # an unusual install layout: ask the import system where the `rules` package is
        from importlib.resources import files

        return Path(str(files("rules")))
    except (ImportError, TypeError):  # pragma: no cover - always found next to cds_service
        return BUNDLED


def pack_files(paths=None) -> list[Path]:
    """Files named, and *.yaml / *.yml under folders named (tests/ and schema/ folders excluded).
    `bundled` names the bundled packs; None (or []) means the bundled packs alone."""
    roots = [_bundled_root()] if not paths else [
        _bundled_root() if str(p) == BUNDLED_NAME else Path(p) for p in paths
    ]
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


def is_bundled(path: Path) -> bool:
    try:
        Path(path).resolve().relative_to(_bundled_root().resolve())
        return True
    except ValueError:
        return False


def is_override(data) -> bool:
    """A hospital override pack: it says `extends:`, overrides a rule (`override: true`), or has
    neither facts nor rules of its own (it cannot stand alone: it changes the packs it is loaded
    on top of)."""
    if not isinstance(data, dict):
        return False
    meta = data.get("pack") if isinstance(data.get("pack"), dict) else {}
    rules = data.get("rules") if isinstance(data.get("rules"), list) else []
    return (
        bool(meta.get("extends"))
        or not (rules or data.get("facts"))
        or any(isinstance(r, dict) and r.get("override") for r in rules)
    )


def resolve_files(paths=None) -> list[Path]:
    """pack_files(paths), with the bundled packs first when every file named is an override
    (hospital files are loaded on top of the bundled packs from any working directory)."""
    files = pack_files(paths)
    if not paths or any(str(p) == BUNDLED_NAME for p in paths) or any(is_bundled(f) for f in files):
        return files
    if files and all(_peek_override(f) for f in files):
        return pack_files([BUNDLED_NAME]) + files
    return files


def _peek_override(path: Path) -> bool:
    import yaml

    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return True  # unreadable: its error is reported; it was meant to be an override or a pack
    return is_override(data)


def display_name(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def read_sources(files, out: Collector) -> list:
    """Read and schema-check files; their YAML and schema errors go to `out`."""
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
    return sources


def load_ruleset(paths=None) -> RuleSet:
    """Load and compile packs (None: the bundled packs; override files alone are loaded on top
    of them, see resolve_files). Raises PackErrors."""
    files = resolve_files(paths)
    out = Collector()
    sources = read_sources(files, out)
    out.raise_if_any()
    compiled = compile_sources(sources, out)
    return RuleSet(*compiled, files=[str(f.resolve()) for f in files])
