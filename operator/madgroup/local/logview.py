"""Reading component logs: the last lines, or following several files at once with a
compose-like ``name | line`` prefix."""

from __future__ import annotations

import sys
from collections import deque
from pathlib import Path
from typing import TextIO

_COLORS = ("36", "33", "32", "35", "34", "31")


def last_lines(path: Path, count: int | None) -> list[str]:
    try:
        with path.open(errors="replace") as f:
            if count is None:
                return f.read().splitlines()
            return list(deque((line.rstrip("\n") for line in f), maxlen=count))
    except FileNotFoundError:
        return []


class Prefixer:
    def __init__(self, names: list[str], stream: TextIO | None = None, prefix: bool = True):
        self.stream = stream or sys.stdout
        self.width = max(len(n) for n in names)
        self.color = self.stream.isatty()
        self.prefix = prefix
        self.codes = {name: _COLORS[i % len(_COLORS)] for i, name in enumerate(names)}

    def line(self, name: str, text: str) -> None:
        if not self.prefix:
            self.stream.write(text + "\n")
            return
        label = f"{name:<{self.width}} |"
        if self.color:
            label = f"\x1b[{self.codes.get(name, '0')}m{label}\x1b[0m"
        self.stream.write(f"{label} {text}\n")

    def flush(self) -> None:
        self.stream.flush()


class Tailer:
    """Follows log files from their current end (or from ``start_lines`` back)."""

    def __init__(self, files: dict[str, Path], from_end: bool = True) -> None:
        self.files = files
        self.offsets: dict[str, int] = {}
        self.partial: dict[str, str] = {}
        for name, path in files.items():
            try:
                self.offsets[name] = path.stat().st_size if from_end else 0
            except FileNotFoundError:
                self.offsets[name] = 0

    def poll(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for name, path in self.files.items():
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            offset = self.offsets.get(name, 0)
            if size < offset:  # rotated or truncated
                offset = 0
            if size == offset:
                continue
            with path.open("rb") as f:
                f.seek(offset)
                data = f.read()
            self.offsets[name] = offset + len(data)
            text = self.partial.pop(name, "") + data.decode(errors="replace")
            lines = text.split("\n")
            if lines[-1]:
                self.partial[name] = lines[-1]
            out.extend((name, line) for line in lines[:-1])
        return out
