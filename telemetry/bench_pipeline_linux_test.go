//go:build linux

package telemetry

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	collectormetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/protobuf/proto"

	"github.com/workerscope/workerscope/workers"
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

func startSink(b *testing.B) (*otlpSink, string) {
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

type statsOf struct{ src *fakeSource }

func (s statsOf) Stats() workers.Stats {
	st := workers.Stats{Exits: map[workers.ExitReason]uint64{}, ByState: map[workers.State]int{}}
	for _, w := range s.src.Snapshot() {
		st.ByState[w.State]++
	}
	return st
}

// BenchmarkExportCycle measures one whole export cycle — sample, observe,
// aggregate, OTLP encode (gzip), send over gRPC to an in-process receiver —
// per worker, in process CPU time (the receiver's decoding included). The
// budget is ≤ 20 µs per worker at N = 1000.
func BenchmarkExportCycle(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run("N="+strconv.Itoa(n), func(b *testing.B) {
			ws := idleWorkers(b, n)
			src := &fakeSource{ws: ws}
			sink, addr := startSink(b)
			s, err := NewSampler(src, SamplerOptions{MinInterval: time.Nanosecond})
			if err != nil {
				b.Fatal(err)
			}
			exp, err := otlpmetricgrpc.New(context.Background(), otlpmetricgrpc.WithEndpoint(addr),
				otlpmetricgrpc.WithInsecure(), otlpmetricgrpc.WithCompressor("gzip"))
			if err != nil {
				b.Fatal(err)
			}
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(time.Hour))),
				sdkmetric.WithCardinalityLimit(4096))
			defer mp.Shutdown(context.Background())
			if _, err := NewMetrics(mp.Meter("bench"), MetricsOptions{Sampler: s, Stats: statsOf{src}}); err != nil {
				b.Fatal(err)
			}
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

// BenchmarkAPIMetricsPollers measures GET /api/metrics latency at N = 500
// workers with 20 concurrent pollers, over real HTTP on loopback, and
// reports p50 and p99. The budget is p99 ≤ 20 ms.
func BenchmarkAPIMetricsPollers(b *testing.B) {
	const n, pollers = 500, 20
	ws := idleWorkers(b, n)
	src := &fakeSource{ws: ws}
	s, err := NewSampler(src, SamplerOptions{})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(ReportHandler(ReportHandlerOptions{Sampler: s}))
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: pollers}}
	var mu sync.Mutex
	var lat []time.Duration
	b.ResetTimer()
	b.SetParallelism((pollers + 1) / 2) // GOMAXPROCS=2 here → 20 goroutines
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			t0 := time.Now()
			resp, err := client.Get(srv.URL)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mine = append(mine, time.Since(t0))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
}
