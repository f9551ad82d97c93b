// Command workerscope supervises JSON-lines RPC workers (such as
// `pi --mode rpc`) and shows what each one costs.
//
//	workerscope [serve] [flags]   run the supervisor and its HTTP API (default)
//	workerscope demo-worker       run the built-in demo worker on stdio
//	workerscope version           print the version
//
// It is the only place that imports every package: flags and environment
// into one config (config.go), then the supervisor, the API and the
// telemetry (telemetry.go), wired once each in serve.
package main
