// Command gen writes the workerscope Grafana dashboard (deploy/grafana/workerscope.json) from Go code
// built with the Grafana Foundation SDK. Run it through `make dashboards`; a test fails when the committed
// JSON is stale.
//
// The dashboard reads Prometheus-compatible metrics (Grafana Cloud's Mimir, or Prometheus with the OTLP
// receiver) through the `datasource` variable and the supervisor's CPU profile from Pyroscope through
// `pyroscope_datasource`. Metric names are the OTLP-translated names of docs/metrics.md: service.name is
// the `job` label, service.instance.id the `instance` label, host.name a label of target_info only.
//
// It imports the grafana-foundation-sdk only; the metric names it uses are
// checked by its test against the contract.
package main
