//go:build linux

// Package e2e runs the real binaries together: workerscope with its demo
// workers, exporting OTLP over gRPC to a real OpenTelemetry Collector built
// from deploy/otelcol, which writes what it receives to a file.
//
// It runs the built binaries as a user would and imports nothing of the project
// but the metric contract (telemetry/otelmetrics and its attribute keys,
// telemetry/attrkey), so a renamed metric or attribute fails here,
// and the metrics page (telemetry/webui), which one browser test serves beside a
// fake GET /api/metrics to feed it hostile reports, and the scripted model server
// (internal/modelstub) that the real pi calls instead of an LLM provider, and the
// renderer of the shipped kustomization (deploy/kubernetes/render), so the router
// test runs nginx on exactly what `kubectl apply -k` would deploy.
package e2e
