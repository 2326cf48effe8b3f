"""The errors a MAD raises on purpose, under one base.

Each says in one line what happened; where a client can act on it, ``retry_after_s`` says
when to try again. Code that catches these decides what to answer; nothing else maps Redis
or transport exceptions of its own. Each carries the exit code a command-line tool ends with
when it stops on it (``exit_code``: 1 for a failure, 2 for wrong usage or configuration);
only the ``mads.core.cli`` entry points turn errors into exits.
"""

from __future__ import annotations


class MadError(Exception):
    """Base of every expected failure in a MAD."""

    exit_code: int = 1


class MadUsageError(MadError):
    """Wrong usage or configuration: what the operator must change before trying again."""

    exit_code = 2


class BusError(MadError):
    """The Conversation Bus could not carry out a command."""


class BusUnavailableError(BusError):
    """Redis is unreachable right now; the bus reconnects by itself."""


class BusBusyError(BusError):
    """Every connection to Redis is in use and none came free in time: back-pressure, not
    an outage (the bus stays connected). Retry shortly."""

    retry_after_s = 1.0


class BusCommandError(BusError):
    """Redis answered a command with an error (a wrong type, a script error, NOPERM...)."""
