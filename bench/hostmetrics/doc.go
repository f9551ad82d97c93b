// Package hostmetrics compares what it costs to measure idle worker
// processes with the OpenTelemetry Collector's hostmetrics receiver (its
// process scraper, from opentelemetry-collector-contrib) and with
// workerscope's own pipeline (the sampler's pass over /proc, the
// instruments, OTLP gRPC with gzip), on the same processes in one run.
//
// It is a module of its own so that the collector's dependencies stay out of
// workerscope's go.mod; it requires workerscope through a replace directive
// (../..). It holds only a benchmark, run by `make bench-hostmetrics` and
// never by `make test`:
//
//	cd bench/hostmetrics && go test -run '^$' -bench . -benchtime 5x
//
// WORKERSCOPE_HOSTBENCH_N chooses the pool sizes (default 100,300,1000),
// WORKERSCOPE_HOSTBENCH_CYCLES the scrapes and export cycles measured per
// phase (default 5) and WORKERSCOPE_HOSTBENCH_INTERVAL the scrape and export
// interval (default 100ms). docs/performance.md says what each side does and
// the figures measured.
//
// Its go.mod pins the collector release deploy/otelcol builds (contrib
// v0.165.1, core v0.165.0/v1.71.0). Tidy it with `go mod tidy -e`: a test of
// the receiver's own packages imports go.opentelemetry.io/collector/scraper/scrapertest
// v0.165.0, which the module proxy does not serve; nothing built here needs it.
package hostmetrics
