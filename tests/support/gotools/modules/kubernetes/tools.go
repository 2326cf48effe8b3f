//go:build tools

// Package tools pins the Kubernetes control plane of the test cluster. k8s.io/kubernetes
// requires its staging modules at v0.0.0 with replace directives into its own tree, which a
// module download does not carry: go.mod replaces each with its published tag of the same
// patch release.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
