"""The errors the control plane raises on purpose, under one base.

Each carries the exit code a command ends with (``exit_code``: 1 when the work failed, 2 when
the request itself was wrong). The entry points turn them into that code and one printed
line — :mod:`madgroup.cli` (``madgroup``), and the two programs it starts on their own: the
local supervisor (:mod:`madgroup.local.supervisor`) and the backup archive tool the
Kubernetes CronJob runs (``python -m madgroup.backup``); the rest raise them and know
nothing of an entry point.
"""

from __future__ import annotations


class MadGroupError(Exception):
    """An expected failure, printed as ``madgroup: <message>``."""

    exit_code = 1


class CommandError(MadGroupError):
    """A command could not do what it was asked; ``code`` is its exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = code

    @property
    def code(self) -> int:
        return self.exit_code


class UsageError(MadGroupError):
    """What was asked cannot be done as asked (a bad option, a bad file)."""

    exit_code = 2
