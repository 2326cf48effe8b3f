"""The model's tests reach every substrate: the Kubernetes emulator and operator come from
tests/support/kube.py."""

from tests.support.kube import (  # noqa: F401 (fixtures)
    _no_kubeconfig,
    apiserver,
    operator,
)
