"""FHIR data for a hook call: the prefetch decision table, and the client that fetches the rest."""

from cds_service.fhir.client import Budget, FetchError, FhirClient, is_open_server
from cds_service.fhir.prefetch import Gathered, gather
from cds_service.fhir.templates import render_template

__all__ = ["Budget", "FetchError", "FhirClient", "Gathered", "gather", "is_open_server", "render_template"]
