//go:build tools

// Package tools pins helm, which installs the operator's chart in the end-to-end tests.
package tools

import _ "helm.sh/helm/v4/cmd/helm"
