"""``mad-run <name>``: the single entry point every substrate uses to start a MAD."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from mads.core.errors import MadError
from mads.core.logs import configure_logging
from mads.core.registry import contracts
from mads.core.service import PortInUseError, build
from mads.core.settings import ConfigurationError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mad-run",
        description="Start one MAD (its HTTP port serves /mcp, /healthz, "
        "/readyz, /status and /metrics). Configuration comes from the environment.",
    )
    installed = contracts()
    parser.add_argument(
        "name",
        choices=sorted(installed),
        metavar="name",
        help=f"which MAD to run: {', '.join(installed) or 'none is installed'}",
    )
    args = parser.parse_args(argv)
    os.environ["MAD_NAME"] = args.name
    configure_logging(os.environ.get("MAD_LOG_FORMAT", "text").lower())
    try:
        service = build(installed[args.name])
    except ConfigurationError as exc:
        print(f"mad-run {args.name}: configuration error: {exc}", file=sys.stderr)
        return exc.exit_code
    configure_logging(service.settings.mad_log_format)
    try:
        asyncio.run(service.serve())
    except PortInUseError as exc:
        print(f"mad-run {args.name}: {exc.strerror}", file=sys.stderr)
        return exc.exit_code
    except MadError as exc:
        print(f"mad-run {args.name}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
