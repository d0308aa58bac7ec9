"""gunicorn settings for production; every value can be overridden on the gunicorn command line."""

import os

from cds_service import workers as _workers
from cds_service.cli import default_workers as _default_workers
from cds_service.cli import worker_class as _worker_class
from cds_service.config import load_config

_config = load_config()
bind = os.environ.get("GUNICORN_BIND", f"{_config['host']}:{_config['port']}")
workers = int(os.environ.get("GUNICORN_WORKERS") or _default_workers(_config))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
worker_class = _worker_class(threads)  # the same rule as `sarcopenia-cds serve`
timeout = 30
graceful_timeout = 20
keepalive = _workers.KEEPALIVE_SECONDS
limit_request_line = _workers.LIMIT_REQUEST_LINE
limit_request_fields = _workers.LIMIT_REQUEST_FIELDS
limit_request_field_size = _workers.LIMIT_REQUEST_FIELD_SIZE
accesslog = None
errorlog = "-"
control_socket_disable = True  # gunicorn >= 25.1; older versions ignore the name (see cli.disable_control_socket)


def post_worker_init(worker):
    """Keep the startup objects out of the garbage collector's reach (see cli.freeze_startup_objects)."""
    from cds_service.cli import freeze_startup_objects

    freeze_startup_objects(worker)


def worker_exit(server, worker):
    """A stopping worker writes the cards still in its database's journal (see cli.close_store)."""
    from cds_service.cli import close_store

    close_store(server, worker)


def on_starting(server):
    """Bring the database schema to head once, before any worker starts."""
    from cds_service.store import Store

    store = Store(_config["database"]["url"], _config["privacy"]["pseudonym_key"],
                  pseudonym_key_file=_config["privacy"]["pseudonym_key_file"])
    store.migrate()
    store.dispose()


if _config["metrics"]["port"] and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    import tempfile

    # every worker writes its samples there; the master's metrics.port listener sums them
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="sarcopenia-cds-metrics-")


def when_ready(server):
    """Serve /metrics on metrics.port from the master (see cli.serve_metrics)."""
    if _config["metrics"]["port"]:
        from cds_service.cli import serve_metrics

        serve_metrics(_config["metrics"]["host"], _config["metrics"]["port"])
