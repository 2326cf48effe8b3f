"""``madgroup report`` on a running local group: one archive with every part the support
bundle lists and a manifest whose checksums match, and no secret anywhere in it — not the
Redis passwords, the internal or metrics credential, a Grace token or the LLM API key."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import httpx
from madgroup import topology
from madgroup.local import envfile

from tests.support.local_group import Group

API_KEY = "sk-test-" + "9" * 32


def test_report_of_a_running_group(group: Group, tmp_path: Path) -> None:
    group.mg("init")
    idle = group.mg("report", check=False)
    assert idle.returncode != 0 and "not running" in idle.stderr
    grace_token = "grace-token-" + envfile.new_password()
    metrics_token = "metrics-" + envfile.new_password()
    group.write_env(
        f"GRACE_API_TOKENS={grace_token}\nFIEDLER_LLM_API_KEY={API_KEY}\n"
        f"MAD_METRICS_TOKEN={metrics_token}\n"
    )
    group.up()
    smoke = group.mg("smoke", timeout=180)  # a task, so Fiedler has something to count
    assert "FAIL" not in smoke.stdout
    # madgroup ui: the live view's URL, served to loopback.
    url = group.mg("ui").stdout.strip()
    assert url == f"http://127.0.0.1:{group.port('rogers')}/ui"
    assert "Rogers" in httpx.get(url, timeout=10).text

    archive = tmp_path / "bundle.tar.gz"
    done = group.mg("report", "-o", str(archive))
    assert f"wrote {archive}" in done.stdout and "every secret redacted" in done.stdout
    again = group.mg("report", "-o", str(archive), check=False)
    assert again.returncode == 2 and "exists" in again.stderr  # never overwritten

    with tarfile.open(archive) as tar:
        files = {m.name.split("/", 1)[1]: tar.extractfile(m).read() for m in tar if m.isfile()}
    manifest = json.loads(files.pop("manifest.json"))
    assert manifest["substrate"] == "local" and manifest["missing"] == {}, manifest["missing"]
    assert set(manifest["parts"]) == set(files)
    for name, data in files.items():
        assert manifest["parts"][name]["sha256"] == hashlib.sha256(data).hexdigest(), name

    expected = {"versions.json", "env.json", "processes.json", "rendered/users.acl"}
    expected |= {"rendered/redis.conf"}
    for comp in topology.COMPONENTS:
        expected.add(f"{comp.name}/log.txt")
        if comp.is_mad:
            expected |= {f"{comp.name}/status.json", f"{comp.name}/metrics.txt"}
            expected |= {f"{comp.name}/{t}.json" for t in comp.contract.report_tools}
    assert expected <= set(files), expected - set(files)
    assert "rogers/rogers_get_connections.json" in files
    counts = json.loads(files["fiedler/fiedler_count_tasks.json"])
    assert counts["by_status"]["COMPLETED"] >= 1
    assert json.loads(files["grace/status.json"])["lines"]
    assert "mad_up" in files["fiedler/metrics.txt"].decode()
    assert len(files["fiedler/log.txt"].decode().splitlines()) <= 500
    env = json.loads(files["env.json"])
    assert env["REDIS_PASSWORD"] == env["GRACE_API_TOKENS"] == "<redacted>"

    secrets = {
        v
        for k, v in envfile.load(group.root / ".env").items()
        if any(word in k for word in ("PASSWORD", "TOKEN", "KEY"))
    }
    assert {grace_token, API_KEY, metrics_token, group.password()} <= secrets
    everything = b"".join(files.values()) + json.dumps(manifest).encode()
    for secret in secrets:
        assert secret.encode() not in everything
