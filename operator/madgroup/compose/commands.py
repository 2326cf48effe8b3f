"""``madgroup`` sub-commands of the compose substrate.

Compose itself runs the group (``docker compose up -d``); this substrate only contributes
the ``render compose`` target that writes the committed ``docker-compose.yml``.
"""

from __future__ import annotations

import argparse

from madgroup.compose.render import render_files

RENDERERS = {
    "compose": (
        "docker-compose.yml from the shared topology",
        render_files,
    ),
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """No sub-commands of its own: ``madgroup render compose`` is registered by the CLI."""
    del subparsers
