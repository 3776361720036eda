"""Structured JSON logs. Every record carries the request id of the request being served
(a ContextVar set by the HTTP edge), so one id follows a request through the logs; when the
request is traced (``raymall.tracing``), its ``trace_id`` and ``span_id`` too, in every
process the trace crosses."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
# set by raymall.tracing when tracing is on: (trace id, span id) of the current span, or None
trace_ids_hook: Callable[[], tuple[str, str] | None] | None = None


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(time.time(), 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": request_id_var.get(),
        }
        if trace_ids_hook is not None:
            ids = trace_ids_hook()
            if ids is not None:
                out["trace_id"], out["span_id"] = ids
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure(level: str = "INFO") -> None:
    """Install the JSON formatter on the ``raymall`` logger tree (idempotent)."""
    logger = logging.getLogger("raymall")
    logger.setLevel(level)
    if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.propagate = False


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"raymall.{name}")
