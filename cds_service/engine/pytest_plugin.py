"""pytest collection of pack tests: each case in rules/<pack>/tests/*.yaml becomes a test item."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pytest

from .diagnostics import PackErrors
from .load import load_ruleset
from .testcases import CaseError, is_case_file, pack_root_of, read_cases, run_case


@lru_cache(maxsize=8)
def _ruleset_for(pack_root: str):
    """The bundled packs plus, if the tests belong to a pack outside rules/, that pack."""
    from .load import BUNDLED

    root = Path(pack_root)
    paths = None if _inside(root, BUNDLED) else [root]
    return load_ruleset(paths)


def _inside(path: Path, parent: Path) -> bool:
    try:
        path.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


def pytest_collect_file(parent, file_path: Path):
    if (
        file_path.suffix in (".yaml", ".yml")
        and is_case_file(file_path)
        and _inside(file_path, Path(parent.config.rootpath) / "rules")
    ):
        return PackTestFile.from_parent(parent, path=file_path)
    return None


class PackTestFile(pytest.File):
    """One YAML file of pack test cases."""

    def collect(self):
        try:
            cases = read_cases(self.path)
        except CaseError as exc:
            yield PackTestItem.from_parent(self, name="<file>", case=None, error=str(exc))
            return
        for case in cases:
            yield PackTestItem.from_parent(self, name=case.name, case=case, error=None)


class PackTestItem(pytest.Item):
    """One case: load the packs, evaluate the case, compare with its expectations."""

    def __init__(self, *, case, error, **kwargs):
        super().__init__(**kwargs)
        self.case = case
        self.error = error

    def runtest(self):
        if self.error:
            raise PackTestFailure([f"rule_test_error: {self.error}"])
        if self.case.spec.get("skip"):
            pytest.skip(str(self.case.spec["skip"]))
        try:
            ruleset = _ruleset_for(str(pack_root_of(self.path)))
        except PackErrors as exc:
            raise PackTestFailure([f"the packs do not load:\n{exc}"]) from None
        try:
            failures = run_case(ruleset, self.case)
        except CaseError as exc:
            failures = [f"rule_test_error: {exc}"]
        if failures:
            raise PackTestFailure(failures)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, PackTestFailure):
            where = f"{self.path}:{self.case.line if self.case else 1}"
            return f"{where}: {self.name}\n  " + "\n  ".join(excinfo.value.failures)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, (self.case.line - 1 if self.case else 0), f"pack case: {self.name}"


class PackTestFailure(Exception):
    def __init__(self, failures):
        super().__init__("\n".join(failures))
        self.failures = failures
