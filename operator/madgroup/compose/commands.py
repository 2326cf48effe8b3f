"""``madgroup`` sub-commands of the compose substrate.

Compose itself runs the group (``docker compose up -d``); this substrate only contributes
the ``render compose`` target that writes the committed ``docker-compose.yml``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from madgroup.spec import Document


def _render_compose(document: Document | None) -> dict[str, str]:
    from madgroup.compose.render import render_files  # on use: the CLI starts without yaml

    return render_files(document)


RENDERERS = {
    "compose": (
        "docker-compose.yml from the shared topology",
        _render_compose,
    ),
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """No sub-commands of its own: ``madgroup render compose`` is registered by the CLI."""
    del subparsers
