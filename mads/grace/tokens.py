"""Who holds which front-door token, what it may do, and how fast.

Tokens come from two places:

- ``GRACE_API_TOKENS`` — comma-separated tokens, each allowed everything without limits
  (the deployment guide's shorthand); named ``api-token-1``, ``api-token-2``...
- ``GRACE_TOKENS_FILE`` — a JSON file of named tokens, stored as the SHA-256 of the token
  (the file never holds a token itself)::

      {"tokens": [
        {"name": "dashboard",
         "sha256": "<hex sha256 of the token>",
         "scopes": {"tools": ["fiedler_get_task_status", "rogers_*"],
                    "topics": ["mad.topic.dashboard.*"]},
         "limits": {"requests_per_second": 5, "concurrent_calls": 2}}
      ]}

  ``tools`` are globs over tool names (default ``["*"]``); ``topics`` are globs over the
  channels a token may publish on and the topics it may subscribe to through
  ``grace_send_message`` / ``grace_subscribe`` (default ``["*"]``). ``limits`` are off
  unless given: ``requests_per_second`` is a token bucket holding one second's worth,
  ``concurrent_calls`` counts requests in flight.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mads.grace.token_file import (
    ALL,
    TokenFile,
    TokenFileError,
)

TOPIC_TOOLS = {"grace_send_message": "channel", "grace_subscribe": "topics"}
"""Grace's own tools whose arguments name channels: the token's topic scope applies."""


@dataclass(frozen=True)
class Principal:
    """What one token (or the subject of an OAuth access token) may do."""

    name: str
    tools: tuple[str, ...] = ALL
    topics: tuple[str, ...] = ALL
    requests_per_second: float | None = None
    concurrent_calls: int | None = None
    kind: str = "token"
    """``token`` (a static token, by its name) or ``subject`` (an OAuth token's ``sub``)."""

    @property
    def key(self) -> str:
        """Whose limits and metrics these are: a static token's name, or ``subject:<sub>``
        (so a subject never shares a static token's usage)."""
        return self.name if self.kind == "token" else f"{self.kind}:{self.name}"

    @property
    def who(self) -> str:
        """How refusals name it: ``token 'dashboard'``, ``subject 'batch-client'``."""
        return f"{self.kind} {self.name!r}"

    @property
    def unrestricted(self) -> bool:
        return self.tools == ALL and self.topics == ALL

    def may_call(self, tool: str) -> bool:
        return any(fnmatch.fnmatchcase(tool, pattern) for pattern in self.tools)

    def may_use_topic(self, topic: str) -> bool:
        return any(fnmatch.fnmatchcase(topic, pattern) for pattern in self.topics)


def digest(token: str | bytes) -> str:
    raw = token.encode() if isinstance(token, str) else token
    return hashlib.sha256(raw).hexdigest()


def from_api_tokens(tokens: Iterable[str]) -> dict[str, Principal]:
    """``GRACE_API_TOKENS``: every token may do everything."""
    return {digest(t): Principal(f"api-token-{i}") for i, t in enumerate(tokens, start=1)}


def load_file(path: Path) -> dict[str, Principal]:
    """The principals of a tokens file, by the SHA-256 of their token."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise TokenFileError(f"GRACE_TOKENS_FILE {path} cannot be read ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise TokenFileError(f"GRACE_TOKENS_FILE {path} is not JSON ({exc})") from None
    try:
        parsed = TokenFile.model_validate(data)
        parsed.check_unique()
    except ValidationError as exc:
        raise TokenFileError(f"GRACE_TOKENS_FILE {path}: {_describe(exc)}") from None
    except TokenFileError as exc:
        raise TokenFileError(f"GRACE_TOKENS_FILE {path}: {exc}") from None
    found: dict[str, Principal] = {}
    for entry in parsed.tokens:
        found[entry.sha256] = Principal(
            name=entry.name,
            tools=tuple(entry.scopes.tools),
            topics=tuple(entry.scopes.topics),
            requests_per_second=entry.limits.requests_per_second,
            concurrent_calls=entry.limits.concurrent_calls,
        )
    return found


def _describe(exc: ValidationError) -> str:
    """The first problem, where it is in the file (``tokens[0].sha256``), never its value."""
    error = exc.errors()[0]
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"])
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where.lstrip('.') or 'the file'}: {error['msg']}{more}"


TASK_METHODS = ("tasks/get", "tasks/result", "tasks/cancel", "tasks/update")
TaskToolOf = Callable[[Any, str], str | None]
"""For a ``tasks/*`` request: the tool it acts as, given its task id and method."""


@dataclass(frozen=True)
class ScopeRefusal:
    """Why a request is out of a principal's scope: the one-line reason, and the tool or
    topic it lacked (so an OAuth challenge can name the scope that grants it)."""

    reason: str
    tool: str | None = None
    topic: str | None = None


def scope_problem(
    principal: Principal, message: Any, task_tool_of: TaskToolOf | None = None
) -> str | None:
    """Why ``principal`` may not send this JSON-RPC message (or batch), or None."""
    refusal = scope_refusal(principal, message, task_tool_of)
    return refusal.reason if refusal is not None else None


def scope_refusal(
    principal: Principal, message: Any, task_tool_of: TaskToolOf | None = None
) -> ScopeRefusal | None:
    """Why ``principal`` may not send this JSON-RPC message (or batch), or None. A task
    request needs the scope of the tool it acts as (``task_tool_of``); one whose task
    names no such tool is left to be refused as unknown."""
    if principal.unrestricted:
        return None
    who = principal.who
    for item in message if isinstance(message, list) else [message]:
        if not isinstance(item, Mapping):
            continue
        params = item.get("params")
        method = item.get("method")
        if method in TASK_METHODS and task_tool_of is not None and isinstance(params, Mapping):
            acting_as = task_tool_of(params.get("taskId"), str(method))
            if acting_as is not None and not principal.may_call(acting_as):
                reason = f"{who} lacks the scope for tool {acting_as!r} ({method})"
                return ScopeRefusal(reason, tool=acting_as)
            continue
        tool = called_tool(item)
        if tool is None:
            continue
        if not principal.may_call(tool):
            return ScopeRefusal(f"{who} lacks the scope for tool {tool!r}", tool=tool)
        argument = TOPIC_TOOLS.get(tool)
        arguments = params.get("arguments") if isinstance(params, Mapping) else None
        if argument is None or not isinstance(arguments, Mapping):
            continue
        value = arguments.get(argument)
        topics = value if isinstance(value, list) else [value]
        for topic in topics:
            if isinstance(topic, str) and not principal.may_use_topic(topic):
                return ScopeRefusal(f"{who} lacks the scope for topic {topic!r}", topic=topic)
    return None


def called_tool(item: Any) -> str | None:
    """The tool a JSON-RPC ``tools/call`` request names, or None for anything else."""
    if not isinstance(item, Mapping) or item.get("method") != "tools/call":
        return None
    params = item.get("params")
    if not isinstance(params, Mapping) or not isinstance(params.get("name"), str):
        return None
    return str(params["name"])


@dataclass
class _Usage:
    tokens: float
    updated: float
    in_flight: int = 0


@dataclass(frozen=True)
class OverLimit:
    """A refused request: which limit (``rate`` or ``concurrency``), why, how long to wait."""

    kind: str
    reason: str
    wait_s: float


@dataclass
class Limiter:
    """Each principal's request rate and calls in flight (used from one event loop, so
    without a lock). ``default_rate`` and ``default_concurrency`` hold for a principal that
    sets no limit of its own of that kind (``GRACE_DEFAULT_REQUESTS_PER_SECOND``,
    ``GRACE_DEFAULT_CONCURRENT_CALLS``)."""

    clock: Callable[[], float] = time.monotonic
    default_rate: float | None = None
    default_concurrency: int | None = None
    _usage: dict[str, _Usage] = field(default_factory=dict)

    def rate(self, principal: Principal) -> float | None:
        """Requests per second ``principal`` may make (None: no limit)."""
        own = principal.requests_per_second
        return own if own is not None else self.default_rate

    def concurrency(self, principal: Principal) -> int | None:
        """Calls ``principal`` may have in flight (None: no limit)."""
        own = principal.concurrent_calls
        return own if own is not None else self.default_concurrency

    def _for(self, principal: Principal) -> _Usage:
        usage = self._usage.get(principal.key)
        if usage is None:
            capacity = max(1.0, self.rate(principal) or 1.0)
            usage = self._usage[principal.key] = _Usage(capacity, self.clock())
        return usage

    def admit(self, principal: Principal) -> OverLimit | None:
        """Take one request for ``principal``; if over a limit, which and why, and nothing
        taken."""
        usage = self._for(principal)
        most = self.concurrency(principal)
        if most is not None and usage.in_flight >= most:
            reason = f"{principal.who} has {usage.in_flight} calls in flight, its limit"
            return OverLimit("concurrency", reason, 1.0)
        rate = self.rate(principal)
        if rate is not None:
            now = self.clock()
            capacity = max(1.0, rate)
            usage.tokens = min(capacity, usage.tokens + (now - usage.updated) * rate)
            usage.updated = now
            if usage.tokens < 1.0:
                reason = f"{principal.who} is over its limit of {rate:g} requests/s"
                return OverLimit("rate", reason, (1.0 - usage.tokens) / rate)
            usage.tokens -= 1.0
        usage.in_flight += 1
        return None

    def release(self, principal: Principal) -> None:
        usage = self._usage.get(principal.key)
        if usage is not None and usage.in_flight > 0:
            usage.in_flight -= 1


def retry_after(seconds: float) -> str:
    """The ``Retry-After`` header: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


__all__ = [
    "Limiter",
    "OverLimit",
    "Principal",
    "ScopeRefusal",
    "TokenFileError",
    "called_tool",
    "digest",
    "from_api_tokens",
    "load_file",
    "retry_after",
    "scope_problem",
    "scope_refusal",
]
