// Package sampler measures every worker's whole process tree in one cheap
// pass and shares the result, a Report, with every consumer: the OTel
// instruments (telemetry/otelmetrics), GET /api/metrics and the page
// (telemetry/report). Passes closer than Options.MinInterval share one
// Report, and a caller that arrives during a pass gets the previous Report
// instead of queueing.
//
// On Linux the trees come straight from /proc (internal/procfs): membership
// by ancestry and by the inherited workers.MarkerEnv, CPU and page faults
// kept true across exits. Elsewhere gopsutil walks each tree
// (NewGopsutilSampler, which also builds and runs on Linux).
//
// Data flows one way: workers → sampler → consumers. It reads
// workers.Manager through the one-method Source interface and must not
// import OpenTelemetry or net/http.
package sampler
