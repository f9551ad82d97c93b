//go:build linux

package otelmetrics_test

import (
	"context"
	"log/slog"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/workerscope/workerscope/internal/testutil"
	"github.com/workerscope/workerscope/telemetry/otelmetrics"
	"github.com/workerscope/workerscope/telemetry/otelmetrics/workerseries"
	"github.com/workerscope/workerscope/telemetry/otelsetup"
	"github.com/workerscope/workerscope/telemetry/sampler"
	"github.com/workerscope/workerscope/workers/workerstest"

	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// pipeline is the supervisor's metrics path as the binary builds it
// (cmd/workerscope's startTelemetry and observe).
type pipeline struct {
	provider *otelsetup.Provider
	sampler  *sampler.Sampler
	sink     *otelmetrics.SinkProc
	clock    atomic.Int64 // the sampler's clock runs ahead of time.Now by this
}

// flush runs one whole export cycle (a fresh sampling pass included).
func (p *pipeline) flush(tb testing.TB) {
	p.clock.Add(int64(time.Second)) // the sampler's default MinInterval
	if err := p.provider.ForceFlush(context.Background()); err != nil {
		tb.Fatal(err)
	}
}

// check fails tb if an export failed (the provider's exporter logs and
// counts failures instead of returning them).
func (p *pipeline) check(tb testing.TB) {
	if n := p.provider.ExportErrors(); n > 0 {
		tb.Fatalf("%d exports failed", n)
	}
}

// exportPipeline is the supervisor's metrics path over n idle stand-in
// workers (sleep with markers), built as cmd/workerscope builds it at
// --max-workers n with the default OTEL_* settings but the endpoint (OTLP
// gRPC, gzip, cumulative temporality; a Prometheus reader beside it; the
// Go runtime metrics; the Recorder taking every sampling pass): sampler →
// instruments → OTLP gRPC exporter → an in-process receiver. The interval
// is an hour: each ForceFlush is one whole export cycle (a fresh sampling
// pass included). env adds OTEL_* settings (key, value, ...).
func exportPipeline(tb testing.TB, n int, env ...string) *pipeline {
	tb.Helper()
	ws := workerstest.IdleSleepers(tb, n)
	src := &workerstest.StaticSource{WS: ws}
	sink := otelmetrics.StartSink(tb)
	series := workerseries.New(instrumentation.Scope{Name: otelsetup.MeterName, Version: "bench"})
	promReader, _, err := otelsetup.NewPrometheus(series.Producer)
	if err != nil {
		tb.Fatal(err)
	}
	// cmd/workerscope's workerSeries: live workers plus as many stopping,
	// at least 2,000.
	workerSeries := max(2*n, 2000)
	p, err := otelsetup.NewProvider(context.Background(), otelsetup.ProviderOptions{
		Version: "bench",
		Getenv: testutil.Env(append([]string{
			"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://" + sink.Addr,
			"OTEL_METRIC_EXPORT_INTERVAL", "3600000",
			"OTEL_TRACES_EXPORTER", "none", // no span is made here; nothing to connect to
			"OTEL_LOGS_EXPORTER", "none",
		}, env...)...),
		Readers:          []sdkmetric.Reader{promReader},
		Producers:        []otelsetup.ReaderProducer{series.Producer},
		CardinalityLimit: 2*workerSeries + 96,
		RuntimeMetrics:   true,
		Logger:           slog.New(slog.DiscardHandler),
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	rec, err := otelmetrics.NewRecorder(p.Meter)
	if err != nil {
		tb.Fatal(err)
	}
	// The sampler as the binary's (its default MinInterval: the instruments
	// of one collection share a pass), on a clock that flush moves on by
	// MinInterval, so that each export cycle makes a fresh pass.
	pl := &pipeline{provider: p, sink: sink}
	pl.sampler, err = sampler.New(src, sampler.Options{OnPass: rec.RecordSamplerPass,
		Now: func() time.Time { return time.Now().Add(time.Duration(pl.clock.Load())) }})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = pl.sampler.Close() }) // the stat files it keeps open
	if _, err := otelmetrics.NewMetrics(p.Meter, otelmetrics.MetricsOptions{Sampler: pl.sampler, Stats: src, MaxWorkerSeries: workerSeries,
		ExportErrors: p.ExportErrors, WorkerSeries: series}); err != nil {
		tb.Fatal(err)
	}
	return pl
}

// BenchmarkExportCycle measures one whole export cycle — sample, observe,
// aggregate, OTLP encode (gzip), send over gRPC to a receiver in a child
// process — per worker, in this process's CPU time: the supervisor's side,
// as in production where the collector is another process. The receiver's
// CPU (gRPC, gzip inflate) is reported apart. The budget is ≤ 40 µs per
// worker at N = 1000.
func BenchmarkExportCycle(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run("N="+strconv.Itoa(n), func(b *testing.B) {
			p := exportPipeline(b, n)
			p.flush(b) // warm up
			s0 := p.sink.Stats(b)
			cpu0 := otelmetrics.ProcessCPU()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				p.flush(b)
			}
			cpu := otelmetrics.ProcessCPU() - cpu0
			b.StopTimer()
			p.check(b)
			s1 := p.sink.Stats(b)
			reqs := float64(s1.Requests - s0.Requests)
			if int(reqs) != b.N {
				b.Fatalf("%v requests received for %d exports", reqs, b.N)
			}
			per := float64(b.N * n)
			b.ReportMetric(float64(cpu.Nanoseconds())/per, "cpu-ns/worker")
			b.ReportMetric(float64((s1.CPU-s0.CPU).Nanoseconds())/per, "receiver-cpu-ns/worker")
			b.ReportMetric(float64(s1.Bytes-s0.Bytes)/per, "otlp-bytes/worker")
			b.ReportMetric(float64(s1.Wire-s0.Wire)/per, "wire-bytes/worker")
		})
	}
}

// BenchmarkExportCycleRamp is the exporter side of the capacity ramp
// (make capacity; docs/scaling.md): at each pool size, the wall time of one
// whole export cycle (a ForceFlush: sampling pass, observe, aggregate,
// encode, gzip, send), of a sampling pass alone, their difference (what
// the export adds to the pass), and the process CPU of a cycle (the
// receiver, another process, not included).
func BenchmarkExportCycleRamp(b *testing.B) {
	for _, n := range []int{100, 250, 500, 1000, 2000} {
		b.Run("N="+strconv.Itoa(n), func(b *testing.B) {
			p := exportPipeline(b, n)
			ctx := context.Background()
			p.flush(b) // warm up
			var pass, cycle, cpu time.Duration
			for b.Loop() {
				pass += p.sampler.Report(ctx).Duration
				c0, t0 := otelmetrics.ProcessCPU(), time.Now()
				p.flush(b)
				cycle += time.Since(t0)
				cpu += otelmetrics.ProcessCPU() - c0
			}
			p.check(b)
			per := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
			b.ReportMetric(per(cycle), "cycle-ms")
			b.ReportMetric(per(pass), "pass-ms")
			b.ReportMetric(per(cycle-pass), "export-ms")
			b.ReportMetric(per(cpu), "cycle-cpu-ms")
		})
	}
}
