"""Waiting for a condition with a deadline (never a fixed sleep): the one way the tests wait.

``wait_for(condition, timeout, interval, what)`` calls ``condition`` until it returns a
truthy value and returns that value; past the deadline it fails naming ``what`` and the
last value. ``async_wait_for`` is the same in a coroutine, and ``condition`` may be async."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T | None],
    timeout: float = 20.0,
    interval: float = 0.05,
    what: str = "",
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(_timed_out(timeout, what or repr(condition), value))
        time.sleep(interval)


@overload
async def async_wait_for(
    condition: Callable[[], Awaitable[T | None]],
    timeout: float = ...,
    interval: float = ...,
    what: str = ...,
) -> T: ...


@overload
async def async_wait_for(
    condition: Callable[[], T | None],
    timeout: float = ...,
    interval: float = ...,
    what: str = ...,
) -> T: ...


async def async_wait_for(
    condition: Callable[[], object],
    timeout: float = 20.0,
    interval: float = 0.05,
    what: str = "",
) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(_timed_out(timeout, what or repr(condition), value))
        await asyncio.sleep(interval)


def _timed_out(timeout: float, what: str, last: object) -> str:
    return f"timed out after {timeout:g} s waiting for {what} (last: {last!r})"
