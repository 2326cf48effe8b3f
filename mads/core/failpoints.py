"""Named points where a MAD can be made to die on purpose, to test what a crash at exactly
that moment leaves behind (the technique of etcd's gofail and TiKV's fail-rs).

Off unless ``MAD_FAILPOINTS`` names them (comma-separated); a named point sends the process
``SIGKILL`` itself, as ``kill -9`` does: no cleanup, no flush, no reply sent. Whoever started
the process sees it killed by the signal (``-9`` from :mod:`subprocess`, ``137`` from a shell
or a container runtime).
"""

from __future__ import annotations

import logging
import os
import signal

ACTIVE = frozenset(p.strip() for p in os.environ.get("MAD_FAILPOINTS", "").split(",") if p.strip())


def hit(name: str) -> None:
    if name in ACTIVE:
        logging.getLogger(__name__).warning("Failpoint %s: killing the process now", name)
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)
