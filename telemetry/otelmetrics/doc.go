// Package otelmetrics is workerscope's metric contract and the OpenTelemetry
// instruments registered from it.
//
// Contract() is the single source: every instrument is created from its
// MetricDef (kind, value type, unit, description, buckets), one callback
// observes all of them from one sampler Report and one workers.Stats, and
// tests check the collected data and docs/metrics.md against the contract.
// A metric's code is found from its name in one hop: the Metric* constant,
// its MetricDef, and the line of observe or observeWorkers that uses it.
//
// It reads workers (snapshots, stats) and telemetry/sampler (Reports) and
// writes to an OpenTelemetry metric.Meter. It must not import net/http, the
// OTel SDK set-up (telemetry/otelsetup) or any exporter: where the
// measurements go is the caller's choice.
package otelmetrics
