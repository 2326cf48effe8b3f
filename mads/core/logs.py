"""Logging: Python's default ``LEVEL:name:message`` lines (the guide greps for them), or one
JSON object per line with ``MAD_LOG_FORMAT=json``.

Every record is one line, whatever it carries: line breaks and other control characters
are escaped (``\\n``), so no value a client sent can start a line of its own that looks
like the service's, and the whole line — level, logger name and message, or in JSON mode
the whole object after JSON's own escaping — is at most :data:`MAX_LINE` characters: what
does not fit is cut, saying how much was left out. A traceback (``log.exception``) is kept
below its line in text mode, each of its lines capped the same way (those are the
service's own errors); in JSON mode it is a field of the one line and shares its cap.
Values that come from clients are also quoted where they are logged (:func:`quoted`).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime

QUIET_LOGGERS = ("httpx", "httpx2", "httpcore", "mcp", "uvicorn.access", "sse_starlette")
MAX_LINE = 2000
"""The most characters one log line may have, all of it."""
MAX_QUOTED = 80
"""The most characters of one client-supplied value a log line shows."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
"""Control characters, and everything else ``str.splitlines`` breaks a line at."""


def _escape(text: str) -> str:
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def _cut(
    text: str, limit: int, more: int, size: Callable[[str], int] = len, *, end: bool = False
) -> str:
    """The longest ``text[:n] + marker`` whose ``size`` is at most ``limit`` (the marker
    counts what was left out: the rest of ``text`` and ``more``), or with ``end``, the
    longest ``marker + text[-n:]``; ``text`` itself when it fits and nothing else was left
    out."""
    if more == 0 and size(text) <= limit:
        return text

    def candidate(n: int) -> str:
        omitted = len(text) - n + more
        if end:
            return f"[{omitted} characters before] ...{text[len(text) - n :]}"
        return f"{text[:n]}... [{omitted} more characters]"

    low, high = 0, min(len(text), limit)
    while low < high:
        middle = (low + high + 1) // 2
        if size(candidate(middle)) <= limit:
            low = middle
        else:
            high = middle - 1
    shown = candidate(low)
    if size(shown) > limit:  # not even the marker fits: the text, cut short without one
        shown = text[:limit]
        while size(shown) > limit and shown:
            shown = shown[: max(len(shown) - (size(shown) - limit), 0)]
    return shown


def one_line(message: str, limit: int = MAX_LINE) -> str:
    """``message`` with control characters escaped, at most ``limit`` characters long."""
    head = message[:limit]  # escaping only lengthens: nothing past ``limit`` could be shown
    return _cut(_escape(head), limit, len(message) - len(head))


def cap(line: str, limit: int = MAX_LINE) -> str:
    """One line as it is emitted, cut to at most ``limit`` characters."""
    return _cut(line, limit, 0)


def quoted(value: object, limit: int = MAX_QUOTED) -> str:
    """A client-supplied value for a log line or an error: repr-quoted (escapes included),
    cut to ``limit`` characters."""
    text = value if isinstance(value, str) else str(value)
    text = repr(text[: limit + 1])  # quoting only lengthens: the rest is never shown
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
    """``LEVEL:name:message``: the whole line escaped and capped at :data:`MAX_LINE`."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        record.message = ""
        room = max(MAX_LINE - len(self.formatMessage(record)), 0)
        record.message = one_line(message, room)
        line = cap(_escape(self.formatMessage(record)))
        below = "\n".join(cap(part) for part in _below(self, record).splitlines())
        return f"{line}\n{below}" if below else line


def _below(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    """The traceback and stack a record carries (the service's own errors), if any."""
    parts = []
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    if record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(formatter.formatStack(record.stack_info))
    return "\n".join(parts)


def _json_size(text: str) -> int:
    return len(json.dumps(text))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message`` (and
    ``exception``), the whole line at most :data:`MAX_LINE` characters as written."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": "",
        }
        exception = _below(self, record)
        if exception:
            entry["exception"] = ""
        # Each field's share of the line, counted as JSON writes it (quotes and escapes
        # included); an exception keeps up to half of it.
        room = MAX_LINE - len(json.dumps(entry)) + (4 if exception else 2)
        message = record.getMessage()
        head = message[:room]
        share = room - min(_json_size(exception[:room]), room // 2) if exception else room
        entry["message"] = _cut(_escape(head), share, len(message) - len(head), _json_size)
        if exception:
            rest = room - _json_size(entry["message"])
            # A traceback's end says most (the error itself): that is what is kept.
            tail = exception[len(exception) - rest :] if len(exception) > rest > 0 else exception
            omitted = len(exception) - len(tail)
            entry["exception"] = _cut(tail, rest, omitted, _json_size, end=True)
        return cap(json.dumps(entry))


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
