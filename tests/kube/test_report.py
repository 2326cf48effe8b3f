"""``madgroup report --kube``: the support bundle of a MadGroup the operator rolled out
against the emulated API server — the MadGroup with its status, its events, the objects
the operator owns, its pods — with no Secret value anywhere in it, and the parts the
emulator cannot give (pod logs, exec into the pods) named in the manifest with the reason."""

from __future__ import annotations

import asyncio
import json

from madgroup import bundle
from madgroup.kube import naming, report
from madgroup.kube.api import KubeApi, client_for

from tests.support.kube import NS, create_group, request, roll_out

LLM_KEY = "sk-live-" + "7" * 40


async def test_report_of_a_rolled_out_group(apiserver, operator, tmp_path) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "llm", "namespace": NS},
        "stringData": {"key": LLM_KEY},
    }
    await request(apiserver, "POST", f"/api/v1/namespaces/{NS}/secrets", secret)
    llm = {
        "provider": "openai",
        "baseUrl": "http://llm:8080/v1",
        "model": "m",
        "apiKeySecretRef": {"name": "llm", "key": "key"},
    }
    await create_group(apiserver, "demo", {"fiedler": {"llm": llm}})
    await roll_out(apiserver, "demo")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "demo-fiedler-0",
            "namespace": NS,
            "labels": naming.selector_labels("demo", "fiedler"),
        },
        "spec": {"containers": [{"name": "fiedler", "image": "fiedler:1"}]},
    }
    await request(apiserver, "POST", f"/api/v1/namespaces/{NS}/pods", pod)
    lines = [f"INFO:fiedler:line {n}" for n in range(800)] + [f"leaked? {LLM_KEY}"]
    apiserver.pod_logs[NS, "demo-fiedler-0", "fiedler"] = "\n".join(lines)

    api = KubeApi(client_for(str(apiserver.url)))
    collected = await asyncio.to_thread(report.collect, api, NS, "demo", None)
    archive = collected.write(tmp_path / "kube.tar.gz")
    manifest = collected.manifest()
    parts = set(manifest["parts"])

    group = json.loads(collected.parts["madgroup.json"])
    assert {c["type"] for c in group["status"]["conditions"]} >= {"Ready", "Stalled"}
    assert "events.json" in parts and "pods.json" in parts
    for kind, name in (
        ("StatefulSet", "demo-fiedler"),
        ("Deployment", "demo-grace"),
        ("Service", "demo-redis"),
        ("NetworkPolicy", "demo-internal"),
    ):
        assert f"objects/{kind}/{name}.json" in parts, (kind, name)
    assert not any(p.startswith("objects/Secret/") for p in parts)
    missing = manifest["missing"]
    log = collected.parts["pods/demo-fiedler-0/fiedler.log"].decode().splitlines()
    assert len(log) == 500 and log[0] == "INFO:fiedler:line 301"
    assert missing["pods/demo-fiedler-0/status.json"] == "the exec API is not available here"
    assert "pods/demo-fiedler-0/fiedler_count_tasks.json" in missing

    # The key was in a Secret (never read) and in a log line: it is nowhere in the bundle.
    assert LLM_KEY.encode() not in b"".join(collected.parts.values())
    fiedler = json.loads(collected.parts["objects/StatefulSet/demo-fiedler.json"])
    env = fiedler["spec"]["template"]["spec"]["containers"][0]["env"]
    ref = next(e for e in env if e["name"] == "FIEDLER_LLM_API_KEY")
    assert ref["valueFrom"]["secretKeyRef"] == {"name": "llm", "key": "key"}
    assert archive.exists()


async def test_with_fiedler_on_postgresql_the_report_says_where_its_data_is(
    apiserver, tmp_path
) -> None:
    """The bundle holds none of the database's data and says where it is; the connection
    URI (its password in it) is scrubbed wherever it shows, and never read into a part."""
    password = "pg-" + "9" * 30
    uri = f"postgresql://app:{password}@tasks-rw.{NS}:5432/app"
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "tasks-app", "namespace": NS},
        "stringData": {"uri": uri, "password": password},
    }
    await request(apiserver, "POST", f"/api/v1/namespaces/{NS}/secrets", secret)
    store = {"type": "postgresql", "uriSecretRef": {"name": "tasks-app"}}
    await create_group(apiserver, "demo", {"fiedler": {"replicas": 2, "store": store}})
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "demo-fiedler-5d9c-x1",
            "namespace": NS,
            "labels": naming.selector_labels("demo", "fiedler"),
        },
        "spec": {"containers": [{"name": "fiedler", "image": "fiedler:1"}]},
    }
    await request(apiserver, "POST", f"/api/v1/namespaces/{NS}/pods", pod)
    apiserver.pod_logs[NS, "demo-fiedler-5d9c-x1", "fiedler"] = f"ERROR:fiedler:{uri} refused"

    api = KubeApi(client_for(str(apiserver.url)))
    collected = await asyncio.to_thread(report.collect, api, NS, "demo", None)
    manifest = collected.manifest()
    (line,) = manifest["not_included"].values()
    assert line.startswith("fiedler's data is in PostgreSQL, whose own backups keep it")
    summary = bundle.summary("kube.tar.gz", collected)
    assert f"  not included: {line}" in summary.splitlines()
    assert "objects/Deployment/demo-fiedler.json" in set(manifest["parts"]) | set(
        manifest["missing"]
    )
    everything = b"".join(collected.parts.values()) + json.dumps(manifest).encode()
    assert password.encode() not in everything and uri.encode() not in everything
