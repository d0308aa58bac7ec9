"""Prometheus metrics: requests and latency per hook and status, cards by finding, feedback, FHIR errors."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import multiprocess

LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class Metrics:
    """The service's metric families, in a registry of their own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("cds_requests_total", "CDS Hooks HTTP requests", ["hook", "status"], registry=self.registry)
        self.latency = Histogram("cds_request_duration_seconds", "CDS Hooks request latency", ["hook", "status"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.cards = Counter("cds_cards_total", "Cards sent, by primary finding", ["finding"], registry=self.registry)
        self.findings = Counter("cds_findings_total", "Findings made", ["finding"], registry=self.registry)
        self.feedback = Counter("cds_feedback_total", "Feedback entries received", ["outcome", "result"], registry=self.registry)
        self.reloads_refused = Counter("cds_rule_reloads_refused_total",
                                       "Rule-pack reloads refused (errors in the new set; the last good set keeps serving)",
                                       ["trigger"], registry=self.registry)
        self.fhir_errors = Counter("cds_fhir_fetch_errors_total", "FHIR fetches that failed", ["reason"], registry=self.registry)

    def exposition(self) -> bytes:
        """The text exposition; under gunicorn with PROMETHEUS_MULTIPROC_DIR, all workers' samples."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
