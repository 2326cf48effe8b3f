"""``madgroup report --kube NAME -n NS``: the support bundle of a MadGroup in a cluster.

The MadGroup (spec, status and conditions), its events, every object the operator owns for
it as the cluster has it, its pods' status and last 500 log lines per container, and what
runs inside each MAD's pod (``mad-status --json``, ``/metrics``, the report tools its
contract names) through the exec API. No Secret is put in the bundle: an object that
references one names it (``secretKeyRef``); the Secrets the group uses are read only so
that their values can be scrubbed from every log line and output (a value that leaked into
a log is replaced there too). A part the cluster refuses or the caller may not read is
named in the manifest, with the reason; the rest is kept.
"""

from __future__ import annotations

import base64
from typing import Any

from madgroup import bundle, topology
from madgroup import spec as spec_module
from madgroup.kube import crd, naming, objects
from madgroup.kube.api import ApiError, KubeApi
from madgroup.kube.reconcile import group_path
from madgroup.resolved import resolve

POD_LOG_LINES = bundle.LOG_LINES
METRICS = (
    "import os, sys, urllib.request; "
    "sys.stdout.write(urllib.request.urlopen("
    "'http://127.0.0.1:' + os.environ['MAD_PORT'] + '/metrics', timeout=10).read().decode())"
)


def collect(api: KubeApi, namespace: str, name: str, exec_in: Any = None) -> bundle.Bundle:
    """``exec_in(pod, container, argv) -> str``: run a command in a pod (None: not
    available, say so)."""
    group = api.get(group_path(namespace, name))
    if group is None:
        raise ApiError(404, "NotFound", f"MadGroup {namespace}/{name} not found")
    problem = None
    try:
        spec = crd.parse(group.get("spec"))
        resolved = resolve(spec)
    except Exception as exc:  # an invalid spec is reported as such; the rest is still kept
        problem = f"the spec does not parse: {exc}"
        spec = crd.KubeMadGroupSpec()
        resolved = resolve(spec)
    owner = objects.Owner(name, namespace, "")
    secrets, unread = _secret_values(api, owner, spec)
    report = bundle.Bundle("kubernetes", secrets)
    report.not_included.update(resolved.not_backed_up())
    if problem:
        report.could_not("children", problem)
    if unread:
        report.could_not("scrubbing", f"could not read {unread} to scrub their values from logs")
    report.add("versions.json", bundle.versions())
    report.add("madgroup.json", _without_secrets(group))
    _events(api, report, namespace, name)
    for component in resolved:
        for manifest in objects.component_objects(owner, spec, component):
            kind = naming.KINDS.get(manifest["kind"])
            if kind is None or manifest["kind"] == "Secret":
                continue
            live_name = manifest["metadata"]["name"]
            part = f"objects/{manifest['kind']}/{live_name}.json"
            _get(api, report, part, kind.path(namespace, live_name))
    _pods(api, report, namespace, name, exec_in)
    return report


def _secret_values(
    api: KubeApi, owner: objects.Owner, spec: crd.KubeMadGroupSpec
) -> tuple[set[str], str | None]:
    """The values of every Secret the group uses (its references and the generated ones),
    read only so that the bundle can scrub them from logs and outputs; never written."""
    names = {ref.name for ref in spec_module.secret_refs(spec).values()}
    names |= {g.name for g in objects.generated_secrets(owner, spec)}
    values: set[str] = set()
    unread = []
    for secret_name in sorted(names):
        try:
            found = api.get(naming.SECRET.path(owner.namespace, secret_name))
        except ApiError:
            unread.append(secret_name)
            continue
        for raw in ((found or {}).get("data") or {}).values():
            try:
                values.add(base64.b64decode(raw).decode())
            except (ValueError, UnicodeDecodeError):
                continue
        values.update(str(v) for v in ((found or {}).get("stringData") or {}).values())
    values |= {item.strip() for v in list(values) for item in v.split(",") if item.strip()}
    return values, ", ".join(unread) or None


def _get(api: KubeApi, report: bundle.Bundle, part: str, path: str) -> None:
    try:
        found = api.get(path)
    except ApiError as exc:
        report.could_not(part, f"{exc.status} {exc.reason}: {exc}")
        return
    if found is None:
        report.could_not(part, "not in the cluster")
    else:
        report.add(part, _without_secrets(found))


def _events(api: KubeApi, report: bundle.Bundle, namespace: str, name: str) -> None:
    try:
        listed = api.get(f"/api/v1/namespaces/{namespace}/events") or {}
    except ApiError as exc:
        report.could_not("events.json", f"{exc.status} {exc.reason}")
        return
    mine = [
        e
        for e in listed.get("items", [])
        if str((e.get("involvedObject") or {}).get("name", "")).startswith(name)
    ]
    report.add("events.json", mine)


def _pods(api: KubeApi, report: bundle.Bundle, namespace: str, name: str, exec_in: Any) -> None:
    try:
        listed = api.get(f"/api/v1/namespaces/{namespace}/pods") or {}
    except ApiError as exc:
        report.could_not("pods", f"{exc.status} {exc.reason}")
        return
    wanted = naming.group_labels(name)
    pods = [
        p
        for p in listed.get("items", [])
        if wanted.items() <= ((p.get("metadata") or {}).get("labels") or {}).items()
    ]
    report.add("pods.json", [_without_secrets(p) for p in pods])
    for pod in pods:
        pod_name = pod["metadata"]["name"]
        component = pod["metadata"]["labels"].get(naming.LABEL_COMPONENT, "")
        for container in (pod.get("spec") or {}).get("containers", []):
            cname = container["name"]
            path = f"/api/v1/namespaces/{namespace}/pods/{pod_name}/log"
            try:
                text = api.text(path, [("container", cname), ("tailLines", str(POD_LOG_LINES))])
                report.add(f"pods/{pod_name}/{cname}.log", text)
            except ApiError as exc:
                report.could_not(f"pods/{pod_name}/{cname}.log", f"{exc.status} {exc.reason}")
        comp = next((c for c in topology.COMPONENTS if c.dns_name == component), None)
        if comp is None or not comp.is_mad:
            continue
        commands = {
            "status.json": ["mad-status", "--json"],
            "metrics.txt": ["python", "-c", METRICS],
        }
        for tool in comp.contract.report_tools if comp.contract is not None else ():
            commands[f"{tool}.json"] = ["mad-cli", tool, "{}"]
        for part, argv in commands.items():
            where = f"pods/{pod_name}/{part}"
            if exec_in is None:
                report.could_not(where, "the exec API is not available here")
                continue
            first = (pod.get("spec") or {}).get("containers", [{}])[0].get("name", "")
            try:
                report.add(where, exec_in(pod_name, first, argv))
            except Exception as exc:  # the cluster refused (RBAC, a pod not running)
                report.could_not(where, f"exec {' '.join(argv[:2])}: {exc}")


def _without_secrets(obj: Any) -> Any:
    """``obj`` without what a Secret holds or a managedFields list; env values of names
    that look secret are replaced (a value set inline would otherwise be kept)."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            if key == "managedFields":
                continue
            if key in ("data", "stringData") and obj.get("kind") == "Secret":
                out[key] = {k: bundle.REDACTED for k in value or {}}
                continue
            out[key] = _without_secrets(value)
        if "name" in out and "value" in out and bundle.SECRET_NAME.search(str(out["name"])):
            out["value"] = bundle.REDACTED
        return out
    if isinstance(obj, list):
        return [_without_secrets(v) for v in obj]
    return obj


def exec_with(api: KubeApi, namespace: str) -> Any:
    """A real ``exec_in`` through the kubernetes client's websocket stream."""
    from kubernetes import client as k8s
    from kubernetes.stream import stream

    core = k8s.CoreV1Api(api.client)

    def run(pod: str, container: str, argv: list[str]) -> str:
        output = stream(
            core.connect_get_namespaced_pod_exec,
            pod,
            namespace,
            container=container,
            command=argv,
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
            _request_timeout=30,
        )
        return str(output)

    return run
