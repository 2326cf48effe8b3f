"""``mad-cli`` refused by a MAD behind the front door (the group's internal credential
required): one line saying so, exit 1 — and with the credential in its environment, as
``madgroup exec`` gives it, the call goes through."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.support.mad_process import REPO, MadProcess
from tests.support.secrets import exposures

SOLVE = json.dumps(
    {"thought": "t", "thoughtNumber": 1, "totalThoughts": 1, "nextThoughtNeeded": False}
)


def mad_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("MAD_", "GRACE_"))}
    pythonpath = os.pathsep.join([str(REPO), str(REPO / "operator")])
    return subprocess.run(
        [sys.executable, "-m", "mads.core.cli.call", *args],
        env={**kept, "PYTHONPATH": pythonpath, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_internal_credential_missing_or_wrong(start_mad) -> None:
    credential = "internal-credential-0123456789abcdef"
    thinking: MadProcess = start_mad("sequential_thinking", {"MAD_INTERNAL_TOKEN": credential})
    own = {"MAD_NAME": "sequential_thinking", "MAD_PORT": str(thinking.port)}
    fix = (
        "(HTTP 401): it serves the group only; run mad-cli in the MAD's own environment, or "
        "call its tools through the front door\n"
    )
    missing = mad_cli(own, "sequentialthinking", SOLVE)
    assert (missing.returncode, missing.stdout) == (1, ""), missing.stderr
    assert missing.stderr == (
        f"mad-cli: Sequential Thinking refused the call: no internal credential {fix}"
    )
    wrong = mad_cli({}, "sequentialthinking", SOLVE, "--url", thinking.url, "--token", "x" * 20)
    assert wrong.returncode == 1
    assert wrong.stderr == (
        f"mad-cli: the MAD at {thinking.url} refused the call: wrong internal credential {fix}"
    )
    allowed = mad_cli({**own, "MAD_INTERNAL_TOKEN": credential}, "sequentialthinking", SOLVE)
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout)["thoughtNumber"] == 1
    said = {"missing": missing.stderr, "wrong": wrong.stderr, "log": thinking.log_text()}
    assert exposures(said, {"MAD_INTERNAL_TOKEN": credential}) == []
