"""Stopping a child process the same way everywhere in the test support."""

from __future__ import annotations

import subprocess


def stop(process: subprocess.Popen[bytes], kill: bool = False, timeout: float = 10) -> None:
    """SIGTERM (or SIGKILL with ``kill``), wait up to ``timeout``, then SIGKILL."""
    if process.poll() is None:
        if kill:
            process.kill()
        else:
            process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
