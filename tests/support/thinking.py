"""Sequential Thinking as a real process on its own (it needs neither the bus nor another MAD),
as a fixture a test module makes with the settings it needs::

    thinking = thinking_fixture({"SEQUENTIAL_THINKING_MAX_HISTORY": "5"})
    shared = thinking_fixture({"MAD_MAX_INFLIGHT": "1"}, scope="module")

The fixture is named after the attribute it is assigned to; it gives a ready
:class:`~tests.support.mad_process.MadProcess` and stops it afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

import pytest

from tests.support.mad_process import MadProcess

NAME = "sequential_thinking"


def thinking_fixture(
    env: Mapping[str, str] | None = None, *, scope: Literal["function", "module"] = "function"
) -> Callable[..., Any]:
    settings = dict(env or {})

    @pytest.fixture(scope=scope)
    def thinking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MadProcess]:
        process = MadProcess(NAME, tmp_path_factory.mktemp(NAME), settings)
        try:
            yield process.start()
        finally:
            process.stop()

    return thinking
