// The Prometheus Operator's CustomResourceDefinitions (example/prometheus-operator-crd),
// which the chart's monitoring objects need. Nothing is built from this module.
module madgroup.test/tools/prometheus-operator

go 1.26.0

require github.com/prometheus-operator/prometheus-operator v0.85.0
