"""Serving HTTPS: a renewed certificate is taken up while the server runs.

uvicorn builds one :class:`ssl.SSLContext` at start. Loading a new chain into that same
context changes what every later handshake presents, while connections already open keep
theirs: a certificate renewed on disk (``madgroup init --tls --renew``, cert-manager
rewriting a Secret volume) is served without a restart and without dropping a request.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from pathlib import Path

RELOAD_CHECK_S = 5.0


def _stamp(cert: Path, key: Path) -> tuple[float, float] | None:
    try:
        return os.stat(cert).st_mtime, os.stat(key).st_mtime  # follows a Secret's symlinks
    except OSError:
        return None


async def certificate_reloader(
    context: ssl.SSLContext,
    cert: Path,
    key: Path,
    log: logging.Logger,
    interval: float = RELOAD_CHECK_S,
) -> None:
    """Every ``interval`` seconds, load ``cert`` and ``key`` into ``context`` if either
    changed. A pair that does not load (a half-written file, a key that does not match)
    leaves the served certificate as it was and is said once, until it changes again."""
    seen = _stamp(cert, key)
    while True:
        await asyncio.sleep(interval)
        now = _stamp(cert, key)
        if now is None or now == seen:
            continue
        seen = now
        try:
            context.load_cert_chain(str(cert), str(key))
        except (OSError, ssl.SSLError) as exc:
            log.warning("Kept the current TLS certificate: %s does not load (%s)", cert, exc)
            continue
        log.info("Serving the renewed TLS certificate from %s", cert)
