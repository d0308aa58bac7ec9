"""Every file the package ships beside its code is package data: an installed wheel (the Docker
image, a hospital's venv) has no source tree to fall back on, so a missing pattern crashes serve."""

from __future__ import annotations

import subprocess
import tomllib
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_tracked_non_python_file_of_the_packages_matches_a_package_data_pattern():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["*"]
    tracked = subprocess.run(["git", "ls-files", "cds_service", "hooks", "rules"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    missing = [f for f in tracked if not any(fnmatch(Path(f).name, p) for p in patterns)]
    assert missing == []
