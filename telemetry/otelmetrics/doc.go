// Package otelmetrics is workerscope's metric contract and the OpenTelemetry
// instruments registered from it.
//
// Contract() is the single source: every instrument is created from its
// MetricDef (kind, value type, unit, description, buckets) as the Go type
// its role declares (take), and tests check the collected data and
// docs/metrics.md against the contract. The instruments come in two
// halves, built in the order the data flows:
//
//   - Recorder (NewRecorder, recorder.go) holds the synchronous ones and
//     needs only a meter: the Manager reports commands, runs, model and
//     tool calls to it and the sampler its passes, so it exists before
//     both.
//   - Metrics (NewMetrics, metrics.go) holds the observable ones and one
//     callback that observes all of them from one sampler Report and one
//     workers.Stats, so it comes after the Manager and the sampler. The
//     per-worker metrics (WorkerMetrics) can be produced instead
//     (MetricsOptions.WorkerSeries, MeasureWorkers): package workerseries
//     hands them to the SDK's readers as metric data, which the binary
//     does (the SDK's aggregators cost more than the rest of the export
//     per data point).
//
// A metric's code is found from its name in one hop: the Metric* constant,
// its MetricDef, and the line of observe or a Record* method that uses it;
// a per-worker metric's through its WorkerMetric (wm*) constant, in
// observeWorkersLocked or observeSession.
//
// It reads workers (snapshots, stats) and telemetry/sampler (Reports) and
// writes to an OpenTelemetry metric.Meter. It must not import net/http, the
// OTel SDK set-up (telemetry/otelsetup) or any exporter: where the
// measurements go is the caller's choice.
package otelmetrics
