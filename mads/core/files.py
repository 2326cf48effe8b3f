"""Writing a file that holds a secret or a key: whole or not at all, with its mode (and
owner, when running as root) set before anyone can read it under its name."""

from __future__ import annotations

import os
from pathlib import Path


def write_file(path: Path, data: str | bytes, mode: int, owner: int | None = None) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed over it: never half
    written, never readable with a looser mode than ``mode``. ``owner`` (a uid, also the
    gid) applies only when this process is root."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data.encode() if isinstance(data, str) else data)
    os.chmod(tmp, mode)  # before the chown: on compose root holds no FOWNER
    if owner is not None and os.geteuid() == 0:
        os.chown(tmp, owner, owner)
    os.replace(tmp, path)
