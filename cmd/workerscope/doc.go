// Command workerscope supervises JSON-lines RPC workers (such as
// `pi --mode rpc`) and shows what each one costs.
//
//	workerscope [serve] [flags]   run the supervisor and its HTTP API (default)
//	workerscope demo-worker       run the built-in demo worker on stdio
//	workerscope version           print the version
//
// It is the only place that imports every package: flags and environment
// into one config (config.go), then serve builds in the order the data
// flows, each part once: the telemetry's provider and profiling, what the
// supervisor reports to (the metric Recorder, the command tracer, the
// worker-log emitter: telemetry.go), the supervisor reporting to them, the
// API, the sampler and the observable instruments reading the supervisor,
// and last the listener. Shutdown runs the other way.
package main
