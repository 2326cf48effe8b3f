"""The MCP SDK's top-level package without its eager client imports.

``import mcp.server`` runs ``mcp/__init__.py`` first, and that imports the client side of
the SDK (``mcp.client``: sessions, the stdio and HTTP transports) to re-export names a
serving process never uses. :func:`defer_init` registers the ``mcp`` package without
running its ``__init__``: its submodules (``mcp.server``, ``mcp.types``, ``mcp.client``...)
import as usual, and the first name looked up on ``mcp`` itself that no submodule has set
(``from mcp import Client``, ``mcp.ClientSession``) runs the real ``__init__`` then, in
the same module object. Checked on mcp 2.3.0, whose ``__init__`` only imports and
re-exports.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from typing import Any

PACKAGE = "mcp"


def defer_init() -> None:
    """Register ``mcp`` with its ``__init__`` deferred to the first name looked up on it
    (nothing to do if it is imported already or not installed)."""
    if PACKAGE in sys.modules:
        return
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return
    module = importlib.util.module_from_spec(spec)
    loader = spec.loader
    lock = threading.Lock()

    def run_init(name: str) -> Any:
        with lock:  # a second thread waits for the first one's run
            if module.__dict__.get("__getattr__") is run_init:
                del module.__dict__["__getattr__"]  # the ``__init__`` runs without it
                try:
                    loader.exec_module(module)
                except BaseException:
                    module.__dict__["__getattr__"] = run_init
                    raise
        try:
            return module.__dict__[name]
        except KeyError:
            raise AttributeError(f"module {PACKAGE!r} has no attribute {name!r}") from None

    module.__dict__["__getattr__"] = run_init
    sys.modules[PACKAGE] = module
