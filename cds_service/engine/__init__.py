"""Declarative rule engine: YAML rule packs compiled once, evaluated per CDS Hooks request.

Stages: loader (YAML + marks) → schema → compile (references, units, FHIRPath, templates) →
RuleSet.evaluate (facts → findings with evidence → cards). Errors: PackErrors holds PackError items.
"""

from .diagnostics import CODES, PackError, PackErrors
from .evaluate import EngineSettings, Evaluation, Finding, Suppression
from .holder import RuleSetHolder
from .load import load_ruleset
from .ruleset import RuleSet

__all__ = [
    "CODES",
    "EngineSettings",
    "Evaluation",
    "Finding",
    "PackError",
    "PackErrors",
    "RuleSet",
    "RuleSetHolder",
    "Suppression",
    "load_ruleset",
]
