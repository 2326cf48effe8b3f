//go:build tools

// Package tools pins etcd, the test cluster's store (the release Kubernetes pairs with).
package tools

import _ "go.etcd.io/etcd/server/v3"
