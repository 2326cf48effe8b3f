"""Which MAD a command-line tool talks to: ``--url``, else ``$MAD_PORT``/``$MAD_NAME`` on
loopback (what ``docker compose exec <mad> ...`` and ``madgroup exec`` provide)."""

from __future__ import annotations

import os

from mads.core.registry import MADS


class TargetError(ValueError):
    pass


def base_url(explicit: str | None) -> str:
    if explicit:
        return explicit.rstrip("/")
    port = os.environ.get("MAD_PORT", "").strip()
    if not port:
        name = os.environ.get("MAD_NAME", "").strip()
        if name in MADS:
            port = str(MADS[name].port)
        elif name:
            raise TargetError(f"MAD_NAME={name!r} is not a known MAD ({', '.join(MADS)})")
        else:
            raise TargetError(
                "no MAD to talk to: set MAD_NAME or MAD_PORT, or pass --url http://HOST:PORT"
            )
    if not port.isdigit():
        raise TargetError(f"MAD_PORT={port!r} is not a port number")
    return f"http://127.0.0.1:{port}"
