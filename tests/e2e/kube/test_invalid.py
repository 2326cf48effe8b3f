"""Invalid MadGroups are refused by the API server itself — the CRD's schema and CEL rules
are real — with the messages the local runner prints for the same file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.kube import harness
from tests.e2e.kube.cluster.control_plane import Cluster

NAMESPACE = "invalid"

INVALID = {
    "fiedler-replicas": {"fiedler": {"replicas": 2}},
    "store-without-uri": {"fiedler": {"store": {"type": "postgresql"}}},
    "static-tokens-off-without-issuer": {"grace": {"oauth": {"staticTokens": False}}},
    "issuer-without-scopes": {
        "grace": {"oauth": {"issuer": "https://id.example", "resource": "https://g.example/mcp"}}
    },
    "openai-without-base-url": {"fiedler": {"llm": {"provider": "openai", "model": "m"}}},
    "unknown-field": {"fiedler": {"colour": "blue"}},
}


def _local_refusal(document: dict[str, Any], tmp_path: Path) -> str:
    """What ``madgroup up -f`` says of the file (and that it refuses it)."""
    path = tmp_path / "madgroup.yaml"
    path.write_text(yaml.safe_dump(document))
    madgroup = Path(sys.executable).parent / "madgroup"
    out = subprocess.run(
        [str(madgroup), "up", "-f", str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("madgroup: "), out.stderr
    return lines[0].removeprefix("madgroup: ")


@pytest.mark.parametrize("case", sorted(INVALID))
def test_the_server_refuses_what_the_local_runner_refuses(
    cluster: Cluster, installed: Path, tmp_path: Path, case: str
) -> None:
    cluster.kubectl("create", "namespace", NAMESPACE, check=False)
    document = harness.sample(NAMESPACE, name=case)
    for component, fields in INVALID[case].items():
        merged = {**document["spec"].get(component, {}), **fields}
        document["spec"][component] = merged

    local = _local_refusal(document, tmp_path)
    applied = harness.apply_document(cluster, document, check=False)

    assert applied.returncode != 0, applied.stdout
    refusal = applied.stderr.strip()
    print(f"local:  {local}\nserver: {refusal}")
    # The local runner's line is "<field>: <message>" (or the server's own wording for an
    # unknown field); the server names the same field and says the same message.
    field, _, message = (
        local.partition(": ") if not local.startswith("unknown") else (local, "", "")
    )
    assert field in refusal
    assert message in refusal
    assert len(refusal.splitlines()) == 1
    stored = cluster.kubectl("get", "madgroup", case, "-n", NAMESPACE, check=False)
    assert stored.returncode != 0 and "NotFound" in stored.stderr
