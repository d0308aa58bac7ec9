"""Collect the rule packs' YAML test cases (rules/<pack>/tests/*.yaml) as pytest items."""

from cds_service.engine.pytest_plugin import pytest_collect_file  # noqa: F401  (pytest hook)
