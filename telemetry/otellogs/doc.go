// Package otellogs turns each worker's stderr lines and the supervisor's
// lifecycle events (worker_start, worker_exit, worker_limit) into
// OpenTelemetry log records: body the line, severity parsed from the line
// where it says it (else INFO), worker.id, worker.key and process.pid as
// attributes, and the trace and span of the command in flight (the
// context workers.Config.OnStderr passes).
//
// The rate limit and the bound on a line are applied before this package
// is called (workers.Config.StderrRate, StderrLineBytes). It reads
// workers' types and writes to an OTel log.LoggerProvider; it must not
// import the OTel SDK set-up (telemetry/otelsetup), any exporter, httpapi
// or the other telemetry packages but the attribute keys
// (telemetry/attrkey).
package otellogs
