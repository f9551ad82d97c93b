//go:build linux

package otelmetrics

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/workerscope/workerscope/internal/testutil"
	"github.com/workerscope/workerscope/telemetry/otelsetup"
	"github.com/workerscope/workerscope/telemetry/sampler"
	"github.com/workerscope/workerscope/workers/workerstest"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	collectormetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/protobuf/proto"
)

// otlpSink is an in-process OTLP gRPC metrics receiver. Its codec counts
// the request bytes without decoding them, so the benchmark's CPU is the
// sender's (plus gRPC's gzip decompression on the receiving side); its
// listener counts the bytes on the wire (compressed, with gRPC's and
// HTTP/2's framing).
type otlpSink struct {
	collectormetrics.UnimplementedMetricsServiceServer
	requests, bytes, wire atomic.Int64
}

func (s *otlpSink) Export(context.Context, *collectormetrics.ExportMetricsServiceRequest) (*collectormetrics.ExportMetricsServiceResponse, error) {
	s.requests.Add(1)
	return &collectormetrics.ExportMetricsServiceResponse{}, nil
}

type countingCodec struct{ sink *otlpSink }

func (c countingCodec) Marshal(v any) ([]byte, error) { return proto.Marshal(v.(proto.Message)) }
func (c countingCodec) Unmarshal(data []byte, v any) error {
	c.sink.bytes.Add(int64(len(data)))
	return nil
}
func (c countingCodec) Name() string { return "proto" }

// countingListener counts what its connections read: the requests as they
// arrive on the wire.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.n}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func startSink(b testing.TB) (*otlpSink, string) {
	b.Helper()
	_ = gzip.Name // registers the gzip codec on the server side
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	sink := &otlpSink{}
	srv := grpc.NewServer(grpc.ForceServerCodec(countingCodec{sink}))
	collectormetrics.RegisterMetricsServiceServer(srv, sink)
	go func() { _ = srv.Serve(countingListener{lis, &sink.wire}) }()
	b.Cleanup(srv.Stop)
	return sink, lis.Addr().String()
}

// processCPU is this process's user+system CPU time (all threads: the SDK,
// gRPC and the in-process receiver).
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pipeline is the supervisor's metrics path as the binary builds it
// (cmd/workerscope's startTelemetry and observe).
type pipeline struct {
	provider *otelsetup.Provider
	sampler  *sampler.Sampler
	sink     *otlpSink
}

// flush runs one whole export cycle (a fresh sampling pass included).
func (p *pipeline) flush(tb testing.TB) {
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
	sink, addr := startSink(tb)
	promReader, _, err := otelsetup.NewPrometheus()
	if err != nil {
		tb.Fatal(err)
	}
	// cmd/workerscope's workerSeries: live workers plus as many stopping,
	// at least 2,000.
	workerSeries := max(2*n, 2000)
	p, err := otelsetup.NewProvider(context.Background(), otelsetup.ProviderOptions{
		Version: "bench",
		Getenv: testutil.Env(append([]string{
			"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://" + addr,
			"OTEL_METRIC_EXPORT_INTERVAL", "3600000",
			"OTEL_TRACES_EXPORTER", "none", // no span is made here; nothing to connect to
			"OTEL_LOGS_EXPORTER", "none",
		}, env...)...),
		Readers:          []sdkmetric.Reader{promReader},
		CardinalityLimit: 2*workerSeries + 96,
		RuntimeMetrics:   true,
		Logger:           slog.New(slog.DiscardHandler),
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	rec, err := NewRecorder(p.Meter)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := sampler.New(src, sampler.Options{MinInterval: time.Nanosecond, OnPass: rec.RecordSamplerPass})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := NewMetrics(p.Meter, MetricsOptions{Sampler: s, Stats: src, MaxWorkerSeries: workerSeries,
		ExportErrors: p.ExportErrors}); err != nil {
		tb.Fatal(err)
	}
	return &pipeline{provider: p, sampler: s, sink: sink}
}

// BenchmarkExportCycle measures one whole export cycle — sample, observe,
// aggregate, OTLP encode (gzip), send over gRPC to an in-process receiver —
// per worker, in process CPU time (the receiver's decoding included). The
// budget is ≤ 20 µs per worker at N = 1000.
func BenchmarkExportCycle(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run("N="+strconv.Itoa(n), func(b *testing.B) {
			p := exportPipeline(b, n)
			p.flush(b) // warm up
			cpu0 := processCPU()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				p.flush(b)
			}
			cpu := processCPU() - cpu0
			p.check(b)
			sink := p.sink
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*n), "cpu-ns/worker")
			b.ReportMetric(float64(sink.bytes.Load())/float64(sink.requests.Load())/float64(n), "otlp-bytes/worker")
			b.ReportMetric(float64(sink.wire.Load())/float64(sink.requests.Load())/float64(n), "wire-bytes/worker")
		})
	}
}

// BenchmarkExportCycleRamp is the exporter side of the capacity ramp
// (make capacity; docs/scaling.md): at each pool size, the wall time of one
// whole export cycle (a ForceFlush: sampling pass, observe, aggregate,
// encode, gzip, send), of a sampling pass alone, their difference (what
// the export adds to the pass), and the process CPU of a cycle.
func BenchmarkExportCycleRamp(b *testing.B) {
	for _, n := range []int{100, 250, 500, 1000, 2000} {
		b.Run("N="+strconv.Itoa(n), func(b *testing.B) {
			p := exportPipeline(b, n)
			ctx := context.Background()
			p.flush(b) // warm up
			var pass, cycle, cpu time.Duration
			for b.Loop() {
				pass += p.sampler.Report(ctx).Duration
				c0, t0 := processCPU(), time.Now()
				p.flush(b)
				cycle += time.Since(t0)
				cpu += processCPU() - c0
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
