"""How OAuth scopes map onto Grace's own scopes (``GRACE_OAUTH_SCOPES_FILE``, whose format
is :mod:`mads.grace.scope_file`'s). ::

    {"scopes": {
       "mad.fiedler": {"tools": ["fiedler_converse", "fiedler_get_task_status"]},
       "mad.monitor": {"tools": ["rogers_*"]},
       "mad.bus": {"tools": ["grace_*"], "topics": ["mad.topic.*", "mad.stream.*"]}},
     "limits": {"requests_per_second": 20, "concurrent_calls": 4},
     "subjects": {"batch-client": {"limits": {"requests_per_second": 100}}}}

A token granted OAuth scopes may call the tools and use the topics of every scope it holds
(globs, as in ``GRACE_TOKENS_FILE``); a scope grants nothing it does not list, and scopes the
file does not name grant nothing. ``limits`` apply to each subject (the token's ``sub``),
``subjects`` overrides them for one. The order of ``scopes`` matters once: a refusal names
the first scope granting what was missing, so list narrow scopes before broad ones.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

from pydantic import ValidationError

from mads.grace.scope_file import ScopeMapError, ScopeMapFile
from mads.grace.token_file import ALL
from mads.grace.tokens import Principal

__all__ = ["ScopeMap", "ScopeMapError", "ScopeMapFile", "load"]


class ScopeMap:
    """The loaded mapping: a principal for a subject holding some scopes, and which scope
    grants a tool or topic (for the ``scope`` of a challenge)."""

    def __init__(self, parsed: ScopeMapFile) -> None:
        self._scopes = parsed.scopes
        self._limits = parsed.limits
        self._subjects = parsed.subjects

    @property
    def names(self) -> list[str]:
        return list(self._scopes)

    def principal(self, subject: str, granted: list[str]) -> Principal:
        tools: list[str] = []
        topics: list[str] = []
        for scope in granted:
            entry = self._scopes.get(scope)
            if entry is not None:
                tools += entry.tools
                topics += entry.topics
        subject_entry = self._subjects.get(subject)
        limits = subject_entry.limits if subject_entry is not None else self._limits
        return Principal(
            name=subject,
            tools=_union(tools),
            topics=_union(topics),
            requests_per_second=limits.requests_per_second,
            concurrent_calls=limits.concurrent_calls,
            kind="subject",
        )

    def granting_tool(self, tool: str) -> str | None:
        """The first scope that grants calling ``tool``."""
        return next((n for n, e in self._scopes.items() if _matches(tool, e.tools)), None)

    def granting_topic(self, topic: str) -> str | None:
        """The first scope that grants ``topic``."""
        return next((n for n, e in self._scopes.items() if _matches(topic, e.topics)), None)


def _matches(value: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(value, pattern) for pattern in patterns)


def _union(patterns: list[str]) -> tuple[str, ...]:
    if "*" in patterns:
        return ALL
    return tuple(dict.fromkeys(patterns))


def load(path: Path) -> ScopeMap:
    """The scopes file at ``path``, or :class:`ScopeMapError` naming what is wrong."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ScopeMapError(
            f"GRACE_OAUTH_SCOPES_FILE {path} cannot be read ({exc.strerror})"
        ) from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ScopeMapError(f"GRACE_OAUTH_SCOPES_FILE {path} is not JSON ({exc})") from None
    try:
        parsed = ScopeMapFile.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "the file"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ScopeMapError(
            f"GRACE_OAUTH_SCOPES_FILE {path}: {where}: {error['msg']}{more}"
        ) from None
    return ScopeMap(parsed)
