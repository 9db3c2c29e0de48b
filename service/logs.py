"""The process's logging: text for a terminal, or one JSON object per line for a log pipeline (the images' default).

Everything Python logs goes through the root logger's one handler: the service's lines, uvicorn's (its loggers
propagate; `python -m service` gives uvicorn no configuration of its own), Python warnings (captured) and
TensorFlow's Python-side lines. TensorFlow's C++ start-up lines (oneDNN, absl) are written by native code straight
to the process's stderr before Python sees them; they stay plain text (the README names them).

The access line (ACCESS_LOG) is the middleware's, one per inference request, with its fields as JSON keys in json
mode: request_id, method, path, protocol, status, duration_ms, queue_ms, model, version, images, bytes_in,
client. Never pixels, bodies, or headers that could carry credentials.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"
# In text mode the access line's fields are in its message; these are the extras it also carries.
ACCESS_FIELDS = (
    "request_id",
    "method",
    "path",
    "protocol",
    "status",
    "duration_ms",
    "queue_ms",
    "model",
    "version",
    "images",
    "bytes_in",
    "client",
)


class _DropColourCopy(logging.Filter):
    """uvicorn attaches an ANSI-coloured copy of some messages (`color_message`); a JSON line needs the plain one."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.pop("color_message", None)
        return True


def configure_logging(level: str, log_format: Literal["text", "json"]) -> None:
    """One handler on the root logger, in the chosen format; warnings become log records."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_DropColourCopy())
    if log_format == "json":
        handler.setFormatter(
            JsonFormatter(
                JSON_FIELDS,
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                timestamp=False,
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    logging.captureWarnings(True)
