//go:build linux

package otelmetrics

import (
	"context"
	"net"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/workerscope/workerscope/telemetry/sampler"
	"github.com/workerscope/workerscope/workers/workerstest"

	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	collectormetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/protobuf/proto"
)

// otlpSink is an in-process OTLP gRPC metrics receiver. Its codec counts
// the request bytes without decoding them, so the benchmark's CPU is the
// sender's (plus gRPC's gzip decompression on the receiving side).
type otlpSink struct {
	collectormetrics.UnimplementedMetricsServiceServer
	requests, bytes atomic.Int64
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
	go func() { _ = srv.Serve(lis) }()
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

// exportPipeline is the supervisor's metrics path over n idle stand-in
// workers (sleep with markers): sampler → instruments → OTLP gRPC exporter
// (gzip) → an in-process receiver. Each ForceFlush of the MeterProvider is
// one whole export cycle (a fresh sampling pass included).
func exportPipeline(tb testing.TB, n int) (*sdkmetric.MeterProvider, *sampler.Sampler, *otlpSink) {
	tb.Helper()
	ws := workerstest.IdleSleepers(tb, n)
	src := &workerstest.StaticSource{WS: ws}
	sink, addr := startSink(tb)
	s, err := sampler.New(src, sampler.Options{MinInterval: time.Nanosecond})
	if err != nil {
		tb.Fatal(err)
	}
	exp, err := otlpmetricgrpc.New(context.Background(), otlpmetricgrpc.WithEndpoint(addr),
		otlpmetricgrpc.WithInsecure(), otlpmetricgrpc.WithCompressor("gzip"))
	if err != nil {
		tb.Fatal(err)
	}
	// The limits workerscope sets (cmd/workerscope) at --max-workers n.
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(time.Hour))),
		sdkmetric.WithCardinalityLimit(2*max(n, 2000)+96))
	tb.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	if _, err := NewMetrics(mp.Meter("bench"), MetricsOptions{Sampler: s, Stats: src, MaxWorkerSeries: n}); err != nil {
		tb.Fatal(err)
	}
	return mp, s, sink
}

// BenchmarkExportCycle measures one whole export cycle — sample, observe,
// aggregate, OTLP encode (gzip), send over gRPC to an in-process receiver —
// per worker, in process CPU time (the receiver's decoding included). The
// budget is ≤ 20 µs per worker at N = 1000.
func BenchmarkExportCycle(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run("N="+strconv.Itoa(n), func(b *testing.B) {
			mp, _, sink := exportPipeline(b, n)
			ctx := context.Background()
			if err := mp.ForceFlush(ctx); err != nil { // warm up
				b.Fatal(err)
			}
			cpu0 := processCPU()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := mp.ForceFlush(ctx); err != nil {
					b.Fatal(err)
				}
			}
			cpu := processCPU() - cpu0
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*n), "cpu-ns/worker")
			b.ReportMetric(float64(sink.bytes.Load())/float64(sink.requests.Load())/float64(n), "otlp-bytes/worker")
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
			mp, s, _ := exportPipeline(b, n)
			ctx := context.Background()
			if err := mp.ForceFlush(ctx); err != nil { // warm up
				b.Fatal(err)
			}
			var pass, cycle, cpu time.Duration
			for b.Loop() {
				pass += s.Report(ctx).Duration
				c0, t0 := processCPU(), time.Now()
				if err := mp.ForceFlush(ctx); err != nil {
					b.Fatal(err)
				}
				cycle += time.Since(t0)
				cpu += processCPU() - c0
			}
			per := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
			b.ReportMetric(per(cycle), "cycle-ms")
			b.ReportMetric(per(pass), "pass-ms")
			b.ReportMetric(per(cycle-pass), "export-ms")
			b.ReportMetric(per(cpu), "cycle-cpu-ms")
		})
	}
}
