"""``madgroup``: one command for every substrate.

Each substrate folder contributes its own sub-commands through a ``commands`` module with a
``register(subparsers)`` function; this module only assembles them and turns expected
failures into one clear line and a non-zero exit.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from madgroup.errors import CommandError, MadGroupError
from madgroup.spec import Document

SUBSTRATE_COMMANDS = (
    "madgroup.local.commands",
    "madgroup.compose.commands",
    "madgroup.kube.commands",
)


Renderer = tuple[str, Callable[[Document | None], dict[str, str]]]
"""A ``render`` target: its help, and what writes its files (paths from the repository
root -> text) for a MadGroup document (``-f``; None: the built-in group)."""


def _substrate_modules() -> list[ModuleType]:
    modules = []
    for module_name in SUBSTRATE_COMMANDS:
        try:
            modules.append(importlib.import_module(module_name))
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
    return modules


def _renderers(modules: list[ModuleType]) -> dict[str, Renderer]:
    """``render`` targets contributed by the substrates: ``RENDERERS = {name: (help, fn)}``
    where ``fn(document) -> dict[path, text]`` returns the files to write (paths relative
    to the repository root)."""
    found: dict[str, Renderer] = {}
    for module in modules:
        found.update(getattr(module, "RENDERERS", {}))
    return found


def _register_render(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    renderers: dict[str, Renderer],
) -> None:
    parser = subparsers.add_parser(
        "render",
        help="write the committed files generated from the shared topology",
        description="Render generated files (docker-compose.yml, the CRD, manifests) from "
        "the one topology. Use --check in CI to fail when a committed file has drifted.",
    )
    parser.add_argument("target", choices=sorted(renderers), help="what to render")
    parser.add_argument("--root", default=".", help="repository root to write into (default: .)")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file differs"
    )
    parser.add_argument("--stdout", action="store_true", help="print instead of writing")
    parser.add_argument(
        "-f",
        "--file",
        metavar="FILE",
        help="a MadGroup file to render (compose); default: the built-in group",
    )

    def run(args: argparse.Namespace) -> int:
        from pathlib import Path

        from madgroup.spec import read_document

        document = read_document(Path(args.file)) if args.file else None
        files = renderers[args.target][1](document)
        drifted = []
        for rel, text in files.items():
            path = Path(args.root) / rel
            if args.stdout:
                sys.stdout.write(text)
            elif args.check:
                if not path.exists() or path.read_text() != text:
                    drifted.append(rel)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
                print(f"wrote {rel}")
        if drifted:
            raise CommandError(
                f"out of date: {', '.join(drifted)} (run: madgroup render {args.target})"
            )
        return 0

    parser.set_defaults(handler=run)


SHARED_COMMANDS: dict[str, tuple[str, str]] = {
    "report": (
        "write a support bundle of the running group (secrets redacted)",
        "Write one .tar.gz for a support request: each component's state and last 500 log "
        "lines, each MAD's /status and /metrics, Rogers' connections and stats, Fiedler's "
        "task counts, versions, the declaration and rendered configuration with every secret "
        "redacted, and a manifest with SHA-256 checksums. The local runner's group by "
        "default; --compose for docker compose's, --kube NAME -n NS for a MadGroup in a "
        "cluster.",
    ),
    "backup": (
        "write a backup of the running group's data (Fiedler's tasks, Redis)",
        "Copy Fiedler's task store (SQLite's online backup API: consistent while Fiedler "
        "writes) and Redis's data (an RDB snapshot) into one .tar.gz with a manifest and "
        "SHA-256 checksums. The group keeps running. The local runner's group by default; "
        "--compose for docker compose's (a MadGroup in a cluster: spec.backup).",
    ),
    "restore": (
        "put a backup's data in place (the group stopped)",
        "Check the whole archive (readable to its end, a madgroup backup, every checksum, "
        "every database's integrity), then put each file in place. A refused archive "
        "changes nothing. Start the group afterwards (madgroup up, docker-compose up -d).",
    ),
}
"""Commands more than one substrate answers. Each substrate contributes, in ``SHARED``,
``{command: (add_arguments, applies, handler)}``; the most specific one that applies runs
(the local runner's, contributed first, is the default and is tried last)."""


def _register_shared(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], modules: list[ModuleType]
) -> None:
    for command, (summary, description) in SHARED_COMMANDS.items():
        found = [m.SHARED[command] for m in modules if command in getattr(m, "SHARED", {})]
        if not found:
            continue
        parser = subparsers.add_parser(command, help=summary, description=description)
        if command == "restore":
            parser.add_argument("archive", help="a file written by `madgroup backup`")
        else:
            parser.add_argument("-o", "--output", help="the archive to write (default: here)")
        for add_arguments, _applies, _handler in found:
            add_arguments(parser)

        def run(args: argparse.Namespace, found: list[Any] = found) -> int:
            for _add, applies, handler in reversed(found):
                if applies(args):
                    return int(handler(args))
            return 2

        parser.set_defaults(handler=run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="madgroup",
        description=(
            "Deploy and run a MAD group: redis, sequential_thinking, grace, rogers, fiedler, "
            "started in dependency order with readiness gates."
        ),
    )
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    modules = _substrate_modules()
    for module in modules:
        module.register(subparsers)
    _register_shared(subparsers, modules)
    renderers = _renderers(modules)
    if renderers:
        _register_render(subparsers, renderers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except MadGroupError as exc:
        print(f"madgroup: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("madgroup: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
