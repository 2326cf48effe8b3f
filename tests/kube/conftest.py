"""The Kubernetes tests' fixtures (an emulated API server, the real operator) come from
tests/support/kube.py; NS, Operator, create_group, mark_ready and workload are imported
here too because bench/operator.py imports them from this module."""

from tests.support.kube import (  # noqa: F401 (fixtures, and names bench/operator.py uses)
    NS,
    Operator,
    _no_kubeconfig,
    apiserver,
    create_group,
    mark_ready,
    operator,
    workload,
)
