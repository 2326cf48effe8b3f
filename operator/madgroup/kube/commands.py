"""``madgroup operator`` and the Kubernetes ``render`` targets."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from madgroup.errors import UsageError

if TYPE_CHECKING:
    from madgroup.spec import Document
import logging


def _render_crd(document: Document | None) -> dict[str, str]:
    from madgroup.kube import install  # imported on use: it pulls in the whole spec model

    _no_document("crd", document)
    return install.render_crd()


def _render_manifests(document: Document | None) -> dict[str, str]:
    from madgroup.kube import install

    _no_document("manifests", document)
    return install.render_manifests()


def _no_document(target: str, document: Document | None) -> None:
    if document is not None:
        raise UsageError(
            f"render {target} does not depend on a MadGroup file: kubectl apply -f it instead"
        )


RENDERERS = {
    "crd": ("the MadGroup CustomResourceDefinition (manifests/, charts/)", _render_crd),
    "manifests": (
        "the operator install manifests, the chart's CRD and RBAC rules, a sample MadGroup",
        _render_manifests,
    ),
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "operator",
        help="run the MadGroup operator (kopf) against the current kubeconfig",
        description="Reconcile MadGroup objects: roll the five services out in dependency "
        "order, each gated on the previous one's readiness, and keep them that way. Uses the "
        "in-cluster service account when there is one, the current kubeconfig otherwise.",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="watch this namespace (repeatable); default: the kubeconfig context's namespace",
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    parser.add_argument(
        "--liveness",
        metavar="URL",
        default=None,
        help="serve a liveness endpoint, e.g. http://0.0.0.0:8080/healthz",
    )
    parser.add_argument(
        "--repair-interval",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how often each group is checked for drift nobody announced (default: 30)",
    )
    parser.add_argument("--context", default=None, help="kubeconfig context to use")
    election = parser.add_argument_group(
        "leader election",
        "with several replicas, one reconciles: the holder of a Lease; the others stand by",
    )
    election.add_argument(
        "--leader-elect",
        action="store_true",
        help="compete for the leader Lease before reconciling (the install manifests set it)",
    )
    election.add_argument(
        "--lease-name", default="madgroup-operator", help="the Lease (default: madgroup-operator)"
    )
    election.add_argument(
        "--lease-namespace",
        default=None,
        metavar="NS",
        help="its namespace (default: $POD_NAMESPACE, else madgroup-system)",
    )
    election.add_argument(
        "--lease-duration",
        type=int,
        default=15,
        metavar="SECONDS",
        help="how long a silent leader keeps the Lease; the renew deadline is 2/3 of it, "
        "retries come every 2/15 of it (default: 15)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    parser.set_defaults(handler=_run)


def _default_namespace(context: str | None) -> str:
    import kubernetes

    try:
        _, current = kubernetes.config.list_kube_config_contexts()
        if context:
            contexts, _ = kubernetes.config.list_kube_config_contexts()
            current = next(c for c in contexts if c["name"] == context)
        return current.get("context", {}).get("namespace") or "default"
    except Exception:  # in-cluster, or no kubeconfig: kopf reports the real problem
        return "default"


def _run(args: argparse.Namespace) -> int:
    from madgroup.errors import CommandError

    try:
        import kopf
        import kubernetes
    except ModuleNotFoundError as exc:
        raise CommandError(
            f"the operator needs {exc.name}, which is not installed: "
            "pip install 'madgroup[operator]' (the operator image has it)"
        ) from None
    from madgroup.kube.api import KubeApi, client_from_kubeconfig
    from madgroup.kube.handlers import build_registry

    if args.repair_interval <= 0:
        raise CommandError("--repair-interval must be positive", code=2)
    if args.lease_duration < 6:
        raise CommandError("--lease-duration must be at least 6 seconds", code=2)
    try:
        client = client_from_kubeconfig(args.context)
    except (kubernetes.config.ConfigException, OSError) as exc:
        raise CommandError(f"no Kubernetes credentials: {exc}") from None
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s:%(name)s:%(message)s",
    )
    leadership = _leadership(args, client) if args.leader_elect else None
    registry = build_registry(
        KubeApi(client),
        repair_interval=args.repair_interval,
        guard=leadership.leading if leadership else None,
    )
    namespaces = (
        [] if args.all_namespaces else (args.namespace or [_default_namespace(args.context)])
    )
    import asyncio  # only the operator needs an event loop; the CLI starts without it

    def operate(stop_flag: Any = None) -> Any:
        return kopf.operator(
            registry=registry,
            standalone=True,
            clusterwide=args.all_namespaces,
            namespaces=namespaces,
            liveness_endpoint=args.liveness,
            stop_flag=stop_flag,
        )

    if leadership is None:
        asyncio.run(operate())
        return 0
    from madgroup.kube.leadership import lead, stand_by

    leadership.start()
    if not asyncio.run(stand_by(leadership, args.liveness)):
        return 0  # told to stop while standing by
    asyncio.run(lead(leadership, operate))
    if leadership.lost.is_set():
        raise CommandError(
            f"lost the leader lease {leadership.namespace}/{leadership.name}: stopped "
            "reconciling; a new process stands by again"
        )
    leadership.release()
    return 0


def _leadership(args: argparse.Namespace, client: Any) -> Any:
    """The Lease this replica competes for; its identity names it in the Lease and in the
    user agent of every request it makes (the API server's audit log tells replicas apart)."""
    import os
    import socket
    import uuid

    from madgroup.kube.install import NAMESPACE
    from madgroup.kube.leadership import Leadership, Timing

    identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
    client.user_agent = f"madgroup-operator/{identity}"
    duration = args.lease_duration
    timing = Timing(
        lease_s=duration, renew_deadline_s=duration * 2 // 3, retry_s=max(1, duration * 2 // 15)
    )
    namespace = args.lease_namespace or os.environ.get("POD_NAMESPACE") or NAMESPACE
    return Leadership(client, namespace, args.lease_name, identity, timing)


def _report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kube", metavar="NAME", help="report on the MadGroup NAME in a cluster instead"
    )
    parser.add_argument("-n", "--namespace", help="its namespace (default: the context's)")
    parser.add_argument("--context", help="kubeconfig context to use")


def _context_namespace(context: str | None) -> str:
    """The kubeconfig context's namespace ("default" when it names none)."""
    import kubernetes

    try:
        contexts, current = kubernetes.config.list_kube_config_contexts()
    except (kubernetes.config.ConfigException, OSError):
        return "default"
    chosen = next((c for c in contexts if c["name"] == context), current) if context else current
    return str((chosen or {}).get("context", {}).get("namespace") or "default")


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from madgroup import bundle
    from madgroup.errors import CommandError
    from madgroup.kube import api, report
    from madgroup.kube.api import ApiError

    output = Path(args.output or bundle.default_name("kube"))
    if output.exists():
        raise CommandError(f"{output} exists; name another file with -o", code=2)
    client = api.client_from_kubeconfig(args.context)
    namespace = args.namespace or _context_namespace(args.context)
    kube = api.KubeApi(client)
    try:
        collected = report.collect(kube, namespace, args.kube, report.exec_with(kube, namespace))
    except ApiError as exc:
        raise CommandError(f"cannot read MadGroup {namespace}/{args.kube}: {exc}") from None
    collected.write(output)
    print(bundle.summary(str(output), collected))
    return 0


def _wants_kube(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "kube", None))


SHARED = {"report": (_report_arguments, _wants_kube, cmd_report)}
"""``madgroup report --kube NAME -n NS``: the support bundle of a MadGroup in a cluster."""
