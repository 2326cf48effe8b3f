"""``mad-status``: print this MAD's status block; exit 0 only when HEALTHY."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

import httpx
from pydantic import ValidationError

from mads.core.cli.call import OneLineParser
from mads.core.cli.target import TargetError, base_url, seconds, tls_verify
from mads.core.contract import METRICS_TOKEN_VARIABLE
from mads.core.status import StatusReport


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineParser(
        prog="mad-status",
        description="Print the MAD's status block. Exit 0 when HEALTHY, 1 when degraded or "
        "unreachable, 2 on a usage error.",
    )
    parser.add_argument("--url", help="the MAD's base URL (default: http://127.0.0.1:$MAD_PORT)")
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    parser.add_argument("--timeout", type=seconds, default=5.0, help="seconds to wait (default 5)")
    args = parser.parse_args(argv)
    try:
        url = f"{base_url(args.url)}/status"
    except TargetError as exc:
        print(f"mad-status: {exc}", file=sys.stderr)
        return 2
    try:
        response = httpx.get(
            url, headers=_scrape_headers(), timeout=args.timeout, verify=tls_verify()
        )
        response.raise_for_status()
        report = StatusReport.model_validate(response.json())
    except httpx.ConnectError:
        print(f"mad-status: cannot reach {url}: connection refused", file=sys.stderr)
        return 1
    except httpx.TimeoutException:
        print(f"mad-status: {url} did not answer within {args.timeout:g} s", file=sys.stderr)
        return 1
    except httpx.HTTPStatusError as exc:
        print(f"mad-status: {url} answered HTTP {exc.response.status_code}", file=sys.stderr)
        return 1
    except (httpx.HTTPError, ValueError, ValidationError) as exc:
        print(f"mad-status: {url} gave no status report ({type(exc).__name__})", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.model_dump(), indent=2))
    else:
        print(report.render_text())
    return 0 if report.healthy else 1


def _scrape_headers() -> dict[str, str]:
    """The group's metrics credential when this environment has it: what opens ``/status``
    of a MAD in another container or pod (loopback needs none)."""
    token = os.environ.get(METRICS_TOKEN_VARIABLE, "").strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


if __name__ == "__main__":
    sys.exit(main())
