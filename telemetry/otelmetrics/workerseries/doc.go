// Package workerseries hands otelmetrics' per-worker series (every metric
// with a worker's attributes) to the OpenTelemetry SDK's metric readers as
// metric data (an sdkmetric.Producer per reader), instead of observable
// instruments whose every data point goes through the SDK's aggregators.
// The series are the same: names, descriptions, units, kinds and
// attributes from the metric contract, one data point per series, sums
// cumulative or delta as each reader's temporality says, the start times
// the SDK gives.
//
// It reads otelmetrics' measurements (Metrics.MeasureWorkers) and knows
// nothing else of workers. It must not import the OTel SDK set-up
// (telemetry/otelsetup) or any exporter: the readers are the caller's.
package workerseries
