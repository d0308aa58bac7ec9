"""Population screening: the service's rules over a whole FHIR Bulk Data export (`sarcopenia-cds screen`).

Stages: bulk (optional $export) → reader (DuckDB: NDJSON → patient buckets, bad lines counted) →
evaluate (each bucket through cds_service.pipeline.evaluate_resources, the hook calls' own path) →
worklist (CSV, Parquet, Task Bundle) and summary (HTML). run ties them together, embedded or on Dask.
"""
