"""Structured JSON logs. Callers pass only safe fields: never tokens, names, identifiers or bodies."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

import orjson

LOGGER_NAME = "cds_service"
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, event and the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
        try:
            return orjson.dumps(entry, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        except orjson.JSONEncodeError:  # what orjson refuses (an integer beyond 64 bits) json writes
            return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Readable lines for a developer's terminal: event then key=value pairs."""

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{k}={v}" for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")
        )
        exc = f" exception={record.exc_info[0].__name__}" if record.exc_info and record.exc_info[0] else ""
        return f"{record.levelname} {record.name} {record.getMessage()} {extras}{exc}".rstrip()


def setup_logging(settings: dict[str, Any]) -> logging.Logger:
    """Configure the service logger once (idempotent across create_app calls)."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(settings["level"])
    formatter = JsonFormatter() if settings["format"] == "json" else TextFormatter()
    handler = next((h for h in logger.handlers if getattr(h, "_cds", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler._cds = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    handler.setFormatter(formatter)
    logger.propagate = True
    return logger


def route_template() -> str:
    """The matched route of the current request as written in the code ('/cds-services/<service_id>'),
    never the path it was called with (which can carry patient ids); '(no route)' when none matched."""
    from flask import has_request_context, request

    if not has_request_context():
        return "(no request)"
    rule = request.url_rule
    return rule.rule if rule is not None else "(no route)"


def log_event(level: int, event: str, **fields: Any) -> None:
    """Log an event with safe, structured fields."""
    logging.getLogger(LOGGER_NAME).log(level, event, extra=fields)
