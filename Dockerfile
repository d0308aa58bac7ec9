# syntax=docker/dockerfile:1
FROM python:3.11-slim AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    SARCOPENIA_CDS_HOST=0.0.0.0 \
    SARCOPENIA_CDS_PORT=8080 \
    SARCOPENIA_CDS_DATABASE__URL=sqlite:////var/lib/sarcopenia-cds/cds.db \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus

WORKDIR /app
COPY pyproject.toml README.md ./
COPY cds_service ./cds_service
COPY hooks ./hooks
COPY rules ./rules
RUN pip install . \
 && useradd --system --uid 10001 --home-dir /app cds \
 && mkdir -p /var/lib/sarcopenia-cds /tmp/prometheus \
 && chown cds /var/lib/sarcopenia-cds /tmp/prometheus

# Hospital rule packs and overrides: mount read-only and list them in rules.paths, e.g.
#   -v /etc/sarcopenia-cds/rules:/rules:ro -e SARCOPENIA_CDS_RULES__PATHS='["bundled", "/rules"]'
# (`bundled`: the packs installed with the service; override files alone are loaded on top of them)
VOLUME ["/var/lib/sarcopenia-cds"]
USER cds
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"

# `serve` runs gunicorn (gthread); SIGHUP reloads rule packs in every worker (a broken set is
# refused, the last good one stays), SIGTERM shuts down gracefully. More than one worker needs
# SARCOPENIA_CDS_REDIS__URL so that JWT replay checks are shared.
ENV GUNICORN_WORKERS=1
CMD ["sh", "-c", "exec sarcopenia-cds serve --host 0.0.0.0 --port 8080 --workers ${GUNICORN_WORKERS}"]
