"""The live view of ``madgroup up``: one line per component (waiting / starting / ready,
with timings), redrawn in place on a terminal, plain lines on a change otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from madgroup.local.state import (
    EXITED,
    FAILED,
    NOT_READY,
    READY,
    STARTING,
    STOPPED,
    WAITING,
    ComponentState,
    GroupState,
)

_MARK = {
    WAITING: "·",
    STARTING: "…",
    READY: "✔",
    NOT_READY: "?",
    FAILED: "✘",
    EXITED: "!",
    STOPPED: "-",
}


def describe(c: ComponentState | None, now: float | None = None) -> str:
    if c is None:
        return WAITING
    now = now or time.time()
    if c.phase == WAITING:
        return f"waiting {c.message}" if c.message else "waiting"
    if c.phase == STARTING:
        elapsed = now - (c.started_at or now)
        return f"starting (pid {c.pid}) {elapsed:.1f}s"
    if c.phase == READY:
        took = (c.ready_at or now) - (c.started_at or now)
        return f"ready in {took:.2f}s (pid {c.pid}, port {c.port})"
    if c.phase == FAILED:
        return f"failed: {c.message}"
    if c.phase == EXITED:
        return c.message or "exited"
    return c.phase


def plain(c: ComponentState | None) -> str:
    """The line shown when not on a terminal: no ticking timers."""
    if c is not None and c.phase == STARTING:
        return f"starting (pid {c.pid})"
    return describe(c)


class Progress:
    def __init__(self, names: list[str], stream: TextIO | None = None) -> None:
        self.names = names
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.width = max(len(n) for n in names)
        self.drawn = 0
        self.drawn_at = 0.0
        self.shown = ""
        self.last: dict[str, str] = {}

    def update(self, state: GroupState) -> None:
        if self.tty:
            self._redraw(state)
            return
        for name in self.names:
            c = state.components.get(name)
            line = plain(c)
            key = str(c.phase if c is not None else WAITING)
            if c is not None and c.phase == WAITING:
                key += c.message
            if self.last.get(name) != key:
                if c is not None and c.phase == READY and self.last.get(name) != STARTING:
                    # Polling can miss a quick start; the record still shows every step.
                    self.stream.write(f"{name:<{self.width}}  starting (pid {c.pid})\n")
                self.last[name] = key
                self.stream.write(f"{name:<{self.width}}  {line}\n")
        self.stream.flush()

    def _redraw(self, state: GroupState) -> None:
        now = time.time()
        phases = "".join(
            (c.phase + c.message) if (c := state.components.get(n)) else "" for n in self.names
        )
        if phases == self.shown and now - self.drawn_at < 0.1:
            return  # timers tick ten times a second; a change of phase shows at once
        self.shown, self.drawn_at = phases, now
        out = []
        if self.drawn:
            out.append(f"\x1b[{self.drawn}F")
        for name in self.names:
            c = state.components.get(name)
            mark = _MARK.get(c.phase if c else WAITING, " ")
            out.append(f"\x1b[2K {mark} {name:<{self.width}}  {describe(c, now)}\n")
        self.drawn = len(self.names)
        self.stream.write("".join(out))
        self.stream.flush()
