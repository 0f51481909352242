"""Log lines: one line per event; JSON when the output is not a terminal.

A JSON line carries ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``
and, when given through ``extra={...}``, the event's fields (``blast``,
``event``, ...), so a log collector can filter on them.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def setup(
    stream: TextIO | None = None, *, level: int = logging.INFO, json_lines: bool | None = None
) -> None:
    """Send the root logger's records to ``stream`` (stderr), JSON unless it is a TTY."""
    out = stream or sys.stderr
    handler = logging.StreamHandler(out)
    if json_lines is None:
        json_lines = not out.isatty()
    handler.setFormatter(
        JsonFormatter()
        if json_lines
        else logging.Formatter("%(asctime)s %(levelname)-7s %(message)s")
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
