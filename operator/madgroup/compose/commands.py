"""``madgroup`` sub-commands of the compose substrate.

Compose itself runs the group (``docker compose up -d``); this substrate contributes the
``render compose`` target that writes the committed ``docker-compose.yml``, and
``--compose`` for the commands every substrate answers (``report``, ``backup``,
``restore``: :mod:`madgroup.compose.operations`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


def _compose_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--compose", action="store_true", help="the group docker compose runs in the project dir"
    )


def _wants_compose(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "compose", False))


def _compose(args: argparse.Namespace) -> Any:
    from madgroup.compose import operations

    return operations, operations.Compose(operations.project_dir(args.project_dir))


def cmd_report(args: argparse.Namespace) -> int:
    from madgroup import bundle

    operations, compose = _compose(args)
    output = _fresh(args.output or bundle.default_name("compose"))
    collected = operations.report(compose)
    collected.write(output)
    print(bundle.summary(str(output), collected))
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from madgroup import backup

    operations, compose = _compose(args)
    output = _fresh(args.output or f"madgroup-backup-{backup.stamp()}.tar.gz")
    print(backup.written(output, operations.take(compose, output)))
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from madgroup import backup

    operations, compose = _compose(args)
    manifest = operations.restore(compose, Path(args.archive))
    print(backup.restored(args.archive, manifest, f"{compose.spelling} up -d"))
    return 0


def _fresh(name: str) -> Path:
    from madgroup.errors import CommandError

    path = Path(name)
    if path.exists():
        raise CommandError(f"{path} exists; name another file with -o", code=2)
    return path


SHARED = {
    "report": (_compose_arguments, _wants_compose, cmd_report),
    "backup": (_compose_arguments, _wants_compose, cmd_backup),
    "restore": (_compose_arguments, _wants_compose, cmd_restore),
}
