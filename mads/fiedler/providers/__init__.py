"""Where Fiedler's answers come from.

A provider turns a prompt into an answer, handing each piece of output to ``emit`` as it is
produced (the worker publishes those pieces on ``mad.stream.<task_id>``). A failure it can
explain raises :class:`ProviderError`; its message becomes the task's ``error_details``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from mads.core.errors import MadError

Emit = Callable[[str], None]


class ProviderError(MadError, RuntimeError):
    """The answer could not be produced; the message is shown to the requester."""


class Provider(Protocol):
    name: str

    async def answer(self, prompt: str, emit: Emit) -> str:
        """Produce the full answer, emitting it piece by piece on the way."""
        ...

    async def close(self) -> None: ...
