"""What a test measured or ran on, in the run's summary whether it passed or not.

pytest shows a passing test's output to no one; a few things belong in every run's
record all the same — that the compose end-to-end run built on local stand-in base
images, the image sizes, the start order it proved, the memory a burst of streams cost.
:func:`record` prints the line (for ``-s`` and failures) and keeps it for the summary
section the root ``conftest.py`` writes at the end of the run."""

from __future__ import annotations

LINES: list[tuple[str, str]] = []


def record(topic: str, line: str) -> None:
    """Keep ``line`` under ``topic`` for the run's summary (and print it)."""
    print(f"{topic}: {line}")
    LINES.append((topic, line))
