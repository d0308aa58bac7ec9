"""Errors the EHR sees: an HTTP status with a FHIR OperationOutcome listing every problem."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome issue: what is wrong, and where (a JSON path) when known."""

    code: str
    diagnostics: str
    expression: str | None = None
    severity: str = "error"

    def as_json(self) -> dict[str, Any]:
        issue: dict[str, Any] = {"severity": self.severity, "code": self.code, "diagnostics": self.diagnostics}
        if self.expression:
            issue["expression"] = [self.expression]
        return issue


@dataclass
class ProtocolError(Exception):
    """A request the service answers with a non-2xx status and an OperationOutcome."""

    status: int
    issues: list[Issue] = field(default_factory=list)

    @classmethod
    def single(cls, status: int, code: str, diagnostics: str, expression: str | None = None) -> ProtocolError:
        return cls(status, [Issue(code, diagnostics, expression)])

    def __str__(self) -> str:
        return f"{self.status}: " + "; ".join(i.diagnostics for i in self.issues)

    def body(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    """A FHIR OperationOutcome resource for these issues."""
    return {"resourceType": "OperationOutcome", "issue": [issue.as_json() for issue in issues]}
