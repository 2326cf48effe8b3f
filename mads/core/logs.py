"""Logging: Python's default ``LEVEL:name:message`` lines (the guide greps for them), or one
JSON object per line with ``MAD_LOG_FORMAT=json``.

Every message is one line, whatever it carries: line breaks and other control characters
are escaped (``\\n``), so no value a client sent can start a line of its own that looks
like the service's, and a message longer than :data:`MAX_LINE` characters is cut, saying
how much was left out. A traceback (``log.exception``) is kept whole, below its line: those
are the service's own errors. Values that come from clients are also quoted where they are
logged (:func:`quoted`).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

QUIET_LOGGERS = ("httpx", "httpx2", "httpcore", "mcp", "uvicorn.access", "sse_starlette")
MAX_LINE = 2000
"""The most characters one log message may have."""
MAX_QUOTED = 80
"""The most characters of one client-supplied value a log line shows."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
"""Control characters, and everything else ``str.splitlines`` breaks a line at."""


def one_line(message: str, limit: int = MAX_LINE) -> str:
    """``message`` with control characters escaped, at most ``limit`` characters long."""
    text = _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), message)
    if len(text) > limit:
        cut = len(text) - limit
        text = f"{text[:limit]}... [{cut} more characters]"
    return text


def quoted(value: object, limit: int = MAX_QUOTED) -> str:
    """A client-supplied value for a log line or an error: repr-quoted (escapes included),
    cut to ``limit`` characters."""
    text = repr(value if isinstance(value, str) else str(value))
    if len(text) > limit:
        text = f"{text[: limit - 4]}...{text[0]}"
    return text


class FirstTime:
    """Which keys have been seen: for what is logged once per key (a refusal per client,
    a forged sender per channel family) and counted thereafter. Remembers at most
    ``limit`` keys, so a flood of new keys cannot grow it; past that nothing more is logged."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._seen: set[object] = set()

    def __call__(self, key: object) -> bool:
        """True the first time ``key`` is seen (while there is room)."""
        if key in self._seen or len(self._seen) >= self.limit:
            return False
        self._seen.add(key)
        return True


class LineFormatter(logging.Formatter):
    """``LEVEL:name:message``, the message on one line and capped."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = one_line(record.message)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": one_line(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(log_format: str = "text", level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(LineFormatter(logging.BASIC_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
