// Package report holds the local read-outs of the telemetry, as HTTP
// handlers: GET /api/metrics (JSON from the shared sampler Report), the
// content negotiation that serves the Prometheus exposition of the same
// OTel instruments (otelsetup.NewPrometheus) at /metrics beside the HTML
// page, and the
// pprof handlers under /api/debug/pprof/ (on the app's own mux, never
// http.DefaultServeMux).
//
// Handlers only: routing and authentication stay with the caller
// (cmd/workerscope mounts them on httpapi behind its token check). It must
// not import workers' Manager or httpapi.
package report
