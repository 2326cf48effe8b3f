"""``scripts/kube-cluster``: a local Kubernetes control plane to try the operator on.

scripts/kube-cluster build     build the pinned programs (once per version)
scripts/kube-cluster up        start etcd, kube-apiserver, controller-manager, scheduler
                               and kwok (fake nodes); print the KUBECONFIG to use
scripts/kube-cluster status    what runs, which versions, where
scripts/kube-cluster down      stop everything `up` started (by pid)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tests.e2e.kube.cluster import control_plane, processes
from tests.support.gotools import build
from tests.support.gotools.tools import CLUSTER_TOOLS

DEFAULT_DIR = Path(".madgroup") / "kube-cluster"


def _build(_: argparse.Namespace) -> int:
    build.ensure(CLUSTER_TOOLS)
    return 0


def _up(args: argparse.Namespace) -> int:
    build.ensure(CLUSTER_TOOLS)
    cluster = control_plane.Cluster(args.dir, nodes=args.nodes, attached=False)
    try:
        cluster.up()
    except BaseException:
        cluster.down()
        raise
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    tools = Path(cluster.binary("kubectl")).parent
    version = cluster.state.versions["kubernetes"]
    print(f"export PATH={tools}:$PATH   # kubectl {version}")
    return 0


def _down(args: argparse.Namespace) -> int:
    try:
        cluster = control_plane.attach(args.dir)
    except control_plane.ClusterError:
        print(f"kube-cluster: no cluster in {args.dir}; nothing to stop", file=sys.stderr)
        return 0
    if not cluster.down():
        print("kube-cluster: nothing was running", file=sys.stderr)
    return 0


def _status(args: argparse.Namespace) -> int:
    state = control_plane.State.load(args.dir.resolve())
    if state is None:
        print(f"no cluster in {args.dir}")
        return 1
    running = {p.name: processes.alive(p) for p in state.processes}
    print(
        json.dumps(
            {
                "server": state.server,
                "kubeconfig": str(Path(state.directory) / "admin.kubeconfig"),
                "versions": state.versions,
                "processes": {
                    p.name: {"pid": p.pid, "running": running[p.name], "log": p.log}
                    for p in state.processes
                },
                "nodes": state.nodes,
            },
            indent=2,
        )
    )
    return 0 if running and all(running.values()) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/kube-cluster",
        description="A real Kubernetes control plane on this machine, built from Go modules, "
        "with kwok playing the kubelets (no container runs).",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=DEFAULT_DIR,
        help=f"state folder: certificates, kubeconfigs, logs, pids (default: {DEFAULT_DIR})",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="build the programs into the cache").set_defaults(run=_build)
    up = commands.add_parser("up", help="start the cluster and leave it running")
    up.add_argument("--nodes", type=int, default=3, help="fake nodes (default: 3)")
    up.set_defaults(run=_up)
    commands.add_parser("down", help="stop what `up` started").set_defaults(run=_down)
    commands.add_parser("status", help="what runs").set_defaults(run=_status)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except (build.BuildError, control_plane.ClusterError) as exc:
        print(f"kube-cluster: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
