"""``python -m tests.support.gotools build [NAME...]``: build the tests' Go programs (all of
them by default: the test cluster's and Ory Hydra) into the cache, once per version."""

from __future__ import annotations

import argparse
import sys

from tests.support.gotools import build
from tests.support.gotools.tools import ALL_TOOLS, tool


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.gotools")
    commands = parser.add_subparsers(dest="command", required=True)
    building = commands.add_parser("build", help="build what the cache lacks")
    building.add_argument(
        "names",
        nargs="*",
        help=f"tools to build (default: all: {', '.join(t.name for t in ALL_TOOLS)})",
    )
    args = parser.parse_args(argv)
    try:
        chosen = [tool(n) for n in args.names] if args.names else list(ALL_TOOLS)
    except StopIteration:
        parser.error(f"unknown tool; the tools are: {', '.join(t.name for t in ALL_TOOLS)}")
    try:
        build.ensure(chosen)
    except build.BuildError as exc:
        print(f"go tools: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
