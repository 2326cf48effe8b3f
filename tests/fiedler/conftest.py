"""Fiedler's test group: a real Redis and a real Sequential Thinking process shared by a test
module, a fresh Fiedler process per test, and an OpenAI-compatible server on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.fake_llm import FakeLLM
from tests.support.fiedler import (  # noqa: F401 (test_idempotency.py imports from here)
    Fiedler,
    call,
    fiedlers,
    wait_terminal,
)
from tests.support.group import ProcessGroup, process_group


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessGroup]:
    """Redis and Sequential Thinking, shared by a module's tests."""
    with process_group(tmp_path_factory.mktemp("group")) as processes:
        processes.start("sequential_thinking")
        yield processes


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeLLM]:
    server = FakeLLM().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def start_fiedler(group: ProcessGroup, tmp_path: Path) -> Iterator[Callable[..., Fiedler]]:
    """A fresh Fiedler per test: ``start_fiedler({"FIEDLER_...": ...}, wait_ready=True)``."""
    yield from fiedlers(group, tmp_path)


@pytest.fixture(scope="module")
def start_fiedler_module(
    group: ProcessGroup, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Fiedler]]:
    """One Fiedler shared by a module's tests (for tests that only read or are refused)."""
    yield from fiedlers(group, tmp_path_factory.mktemp("fiedler"))


@pytest.fixture
def slow_fiedler(start_fiedler: Callable[..., Fiedler], fake_llm: FakeLLM) -> Fiedler:
    """Against the fake OpenAI-compatible endpoint with a long timeout (its ``slow: ...``
    prompts stall until cancelled), one task at a time, so a second waits PENDING."""
    return start_fiedler(
        {
            **fake_llm.fiedler_env,
            "FIEDLER_LLM_TIMEOUT_S": "120",
            "FIEDLER_MAX_CONCURRENCY": "1",
        }
    )
