"""``madgroup``: one command for every substrate.

Each substrate folder contributes its own sub-commands through a ``commands`` module with a
``register(subparsers)`` function; this module only assembles them and turns expected
failures into one clear line and a non-zero exit.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

SUBSTRATE_COMMANDS = (
    "madgroup.local.commands",
    "madgroup.compose.commands",
    "madgroup.kube.commands",
)


class CommandError(Exception):
    """An expected failure: printed as ``madgroup: <message>`` with exit code ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="madgroup",
        description=(
            "Deploy and run a MAD group: redis, sequential_thinking, grace, rogers, fiedler, "
            "started in dependency order with readiness gates."
        ),
    )
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    for module_name in SUBSTRATE_COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        module.register(subparsers)
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
    except CommandError as exc:
        print(f"madgroup: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("madgroup: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
