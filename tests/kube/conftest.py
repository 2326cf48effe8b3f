"""The Kubernetes tests' fixtures (an emulated API server, the real operator) come from
tests/support/kube.py."""

from tests.support.kube import _no_kubeconfig, apiserver, operator  # noqa: F401 (fixtures)
