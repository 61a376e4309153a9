"""Structured JSON logs on stdout: one object per line with level, message, logger, time."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from typing import Any

from beacon.timeutil import isoformat, utcnow

# Context fields (request_id, job_id, region, task_id, …) set by the role that knows them.
log_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("log_context", default={})

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # level and message first, then the context and the record's own fields, then where and when.
        fields = {**log_context.get(),
                  **{k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}}
        entry: dict[str, Any] = {
            "level": record.levelname.lower(),
            "message": record.getMessage(),
            **fields,
            "logger": record.name,
            "time": isoformat(utcnow()),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


def bind(**fields: Any) -> contextvars.Token:
    """Add context fields to every log line of the current context; reset with the token."""
    return log_context.set({**log_context.get(), **{k: v for k, v in fields.items() if v is not None}})


def configure_logging(level: str = "INFO") -> None:
    """Send every logger's records to stdout as JSON lines (idempotent)."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        root.setLevel(level)
        logging.captureWarnings(True)
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)  # warnings (Celery's SecurityWarning, deprecations) as JSON lines too
