"""The model's tests reach every substrate: the Kubernetes emulator and operator come from
the kube tests' fixtures."""

from tests.kube.conftest import (  # noqa: F401 (fixtures)
    _no_kubeconfig,
    apiserver,
    operator,
)
