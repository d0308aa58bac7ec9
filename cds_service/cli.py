"""The `sarcopenia-cds` command: serve, demo, migrate, check-config, the rules tools, call and dev-key,
governance (report, suppressions, explain) and screen."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from cds_service.config import ConfigError, load_config


def freeze_startup_objects(_worker: Any = None) -> None:
    """Move every object alive now (rule packs, models, the app) out of the garbage collector's
    reach. A full collection would otherwise walk them all (about 200 ms here, a latency spike
    whenever it runs) though they live as long as the process; and memory pages shared with the
    master stay shared instead of being copied when the collector touches them."""
    import gc

    gc.collect()
    gc.freeze()


def close_store(_server: Any, worker: Any) -> None:
    """gunicorn's worker_exit: a worker that stops writes the cards still in the journal and
    closes its database connections (what it cannot write now, the next start writes)."""
    app = getattr(worker, "wsgi", None)
    state = getattr(app, "extensions", {}).get("cds")
    if state is not None:
        state.store.dispose()


def announce_when_serving(announcement: str) -> Any:
    """gunicorn's post_worker_init: the first worker to start (age 1) prints `announcement` once it
    has loaded the app, that is when a connection is answered, not when the master starts booting."""

    def post_worker_init(worker: Any) -> None:
        freeze_startup_objects(worker)
        if getattr(worker, "age", None) == 1:
            print(announcement, file=sys.stderr, flush=True)

    return post_worker_init


def database_unreachable(exc: BaseException, url: str) -> str | None:
    """One line for a database that cannot be reached (password hidden), or None for other errors."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, OperationalError

    if not isinstance(exc, OperationalError):
        return None
    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        shown = "the configured database.url"
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"sarcopenia-cds: cannot reach the database {shown}: {reason[0][:300] if reason else type(exc).__name__}"


def disable_control_socket(cfg: Any) -> None:
    """No gunicorn control socket (gunicorn ≥ 25.1 would open one shared by every instance of the
    user, ~/.gunicorn/gunicorn.ctl; the service does not use gunicornc)."""
    if "control_socket_disable" in cfg.settings:
        cfg.set("control_socket_disable", True)


def worker_class(threads: int) -> str:
    """gunicorn's worker class for ``threads`` per worker: one thread is gunicorn's sync worker
    (one request at a time, no keep-alive: the idle worker takes the next connection, for
    CPU-bound calls behind a proxy); more is gthread (threads also wait on FHIR fetches). Both
    as cds_service.workers has them: a deadline on reading a request, OperationOutcome errors."""
    return "cds_service.workers.SyncWorker" if threads <= 1 else "cds_service.workers.ThreadWorker"


def cores() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def default_workers(config: dict[str, Any]) -> int:
    """One worker per core, when the JWT replay cache is shared (redis.url); one otherwise, since
    each worker would remember only the tokens it saw itself."""
    return cores() if config["redis"]["url"] else 1


def http_limits(cfg: Any) -> None:
    """gunicorn's settings for slow and oversized requests (see cds_service.workers)."""
    from cds_service import workers as service_workers

    cfg.set("keepalive", service_workers.KEEPALIVE_SECONDS)
    cfg.set("limit_request_line", service_workers.LIMIT_REQUEST_LINE)
    cfg.set("limit_request_fields", service_workers.LIMIT_REQUEST_FIELDS)
    cfg.set("limit_request_field_size", service_workers.LIMIT_REQUEST_FIELD_SIZE)


def _serve(host: str, port: int, workers: int | None, threads: int, overrides: dict[str, Any] | None = None) -> int:
    """Run the app under gunicorn (sync or gthread workers), migrating the database once first."""
    merged = {"host": host, "port": port, **(overrides or {})}
    config = load_config(overrides=merged)
    one_of_many = workers is None and default_workers(config) == 1 and cores() > 1
    if workers is None:
        workers = default_workers(config)
    metrics_port = config["metrics"]["port"]
    if (workers > 1 or metrics_port) and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # before prometheus_client is imported: /metrics then sums every worker's samples
        import tempfile

        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="sarcopenia-cds-metrics-")
    import signal

    from gunicorn.app.base import BaseApplication
    from gunicorn.arbiter import Arbiter

    from cds_service.app import create_app, engine_settings, install_reload_signal
    from cds_service.engine import RuleSetHolder
    from cds_service.store import Store

    from cds_service.logs import setup_logging

    setup_logging(config["logging"])  # the master logs too (a refused reload, with its diagnostics)
    store = Store(config["database"]["url"], config["privacy"]["pseudonym_key"],
                  pseudonym_key_file=config["privacy"]["pseudonym_key_file"])
    store.migrate()
    store.dispose()
    if one_of_many:  # said once the database is known to work, so a failure stays one line
        print(f"sarcopenia-cds: 1 worker of {cores()} cores: set redis.url to run one per core "
              "(the JWT replay cache must be shared)", file=sys.stderr, flush=True)
    # Loaded once in the master and inherited by every worker it forks: a worker that starts
    # later (a crash, a signal during boot) starts from the last good set, never from broken files.
    rules = RuleSetHolder(config["rules"]["paths"] or None)
    rules.warm(engine_settings(config))  # the plans too, once for every worker, and after each reload
    freeze_startup_objects()

    class Server(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("worker_class", worker_class(threads))
            self.cfg.set("threads", threads)
            self.cfg.set("timeout", 30)
            self.cfg.set("graceful_timeout", 20)
            self.cfg.set("accesslog", None)
            http_limits(self.cfg)
            if metrics_port:
                self.cfg.set("when_ready", lambda _arbiter: serve_metrics(config["metrics"]["host"], metrics_port))
            self.cfg.set("post_worker_init", announce_when_serving(
                f"sarcopenia-cds: listening on http://{host}:{port} (CDS Hooks discovery at {config['base_url']}/cds-services)"))
            disable_control_socket(self.cfg)
            self.cfg.set("worker_exit", close_store)

        def load(self):
            app = create_app(merged, rules=rules)
            install_reload_signal(app)
            return app

        def run(self) -> None:
            ReloadingArbiter(self).run()

    class ReloadingArbiter(Arbiter):
        """SIGHUP reloads the rule packs inside every worker instead of restarting them, so a
        pack set with errors is refused and the last good one keeps serving."""

        def handle_hup(self) -> None:
            reloaded = rules.reload(trigger="SIGHUP")  # what workers started from now on inherit
            self.log.info("SIGHUP: rule packs %s in the master (%s); reloading them in %d worker(s)",
                          "reloaded" if reloaded else "refused, last good set kept", rules.current.version,
                          len(self.WORKERS))
            for pid in list(self.WORKERS):
                try:
                    os.kill(pid, signal.SIGHUP)
                except ProcessLookupError:
                    pass

    print(f"sarcopenia-cds: starting on {host}:{port} (rule packs {rules.current.version})", file=sys.stderr, flush=True)
    Server().run()
    return 0


def serve_metrics(host: str, port: int) -> None:
    """Serve /metrics (every worker's samples) on host:port from the gunicorn master, for
    metrics.port: an internal address the EHR-facing port does not expose."""
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    start_http_server(port, addr=host, registry=registry)
    print(f"sarcopenia-cds: metrics on http://{host}:{port}/metrics", file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sarcopenia-cds", description="CDS Hooks 2.0 service for cancer-associated sarcopenia.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the service (gunicorn, configuration from SARCOPENIA_CDS_*)")
    serve.add_argument("--host", default=None, help="address to bind (default: configuration 'host', 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port to bind (default: configuration 'port', 8080)")
    serve.add_argument("--workers", type=int,
                       default=int(os.environ["GUNICORN_WORKERS"]) if os.environ.get("GUNICORN_WORKERS") else None,
                       help="gunicorn worker processes (default: one per core with redis.url, which shares "
                            "the JWT replay checks; 1 without it)")
    serve.add_argument("--threads", type=int, default=8, help="threads per worker (default 8; 1 runs gunicorn's sync worker)")

    demo = commands.add_parser("demo", help="the service with synthetic patients and the EHR-simulator page")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--locale", choices=["en", "zh-CN"], default=None,
                      help="language of the cards, the demo page and the trend view (default: configuration 'locale', en)")

    commands.add_parser("migrate", help="bring the database schema to the latest version")
    commands.add_parser("check-config", help="validate the configuration and print it (secrets masked)")

    from cds_service.cli_governance import add_governance_commands

    add_governance_commands(commands)
    try:
        from cds_service.cli_rules import add_rules_commands
    except ImportError:  # pragma: no cover - the engine ships cli_rules
        add_rules_commands = None
    if add_rules_commands is not None:
        add_rules_commands(commands)
    from cds_service.cli_call import add_call_commands

    add_call_commands(commands)
    from cds_service.cli_screen import add_screen_command

    add_screen_command(commands)
    return parser


def _masked(config: dict[str, Any]) -> dict[str, Any]:
    shown = json.loads(json.dumps(config))
    if shown["privacy"]["pseudonym_key"]:
        shown["privacy"]["pseudonym_key"] = "***"
    if shown["metrics"]["token"]:
        shown["metrics"]["token"] = "***"
    return shown


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            base = load_config()
            return _serve(args.host or base["host"], args.port or base["port"], args.workers, args.threads)
        if args.command == "demo":
            from cds_service.demo import run_demo

            return run_demo(host=args.host, port=args.port, locale=args.locale)
        if args.command == "migrate":
            from cds_service.store import Store

            config = load_config()
            Store(config["database"]["url"], config["privacy"]["pseudonym_key"],
                  pseudonym_key_file=config["privacy"]["pseudonym_key_file"]).migrate()
            print("database schema is up to date")
            return 0
        if args.command == "check-config":
            print(json.dumps(_masked(load_config()), indent=2))
            return 0
        if args.command in ("report", "suppressions", "explain"):
            from cds_service.cli_governance import run_governance

            return run_governance(args)
        if args.command == "rules":
            from cds_service.cli_rules import run_rules

            return run_rules(args)
        if args.command in ("call", "dev-key"):
            from cds_service.cli_call import run_call_commands

            return run_call_commands(args)
        if args.command == "screen":
            from cds_service.cli_screen import run_screen

            return run_screen(args)
    except ConfigError as exc:
        print(f"sarcopenia-cds: configuration error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        line = database_unreachable(exc, load_config()["database"]["url"]) if args.command in ("serve", "migrate") else None
        if line is None:
            raise
        print(line, file=sys.stderr)
        return 1
    return 1


if __name__ == "__main__":
    sys.exit(main())
