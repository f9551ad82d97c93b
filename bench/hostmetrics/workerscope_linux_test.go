//go:build linux

package hostmetrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/instrumentation"
	collectormetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/protobuf/proto"

	"github.com/workerscope/workerscope/telemetry/otelmetrics"
	"github.com/workerscope/workerscope/telemetry/otelmetrics/workerseries"
	"github.com/workerscope/workerscope/telemetry/otelsetup"
	"github.com/workerscope/workerscope/telemetry/sampler"
	"github.com/workerscope/workerscope/workers/workerstest"
)

// workerscopePhase runs workerscope's metrics export as the binary builds
// it: otelsetup.NewProvider from the OTEL_* environment (OTLP gRPC, gzip,
// the periodic reader every cfg.interval, the Go runtime metrics, the
// per-worker series' producer) with otelmetrics.NewMetrics reading a
// sampler over src whose passes the callback and the producer of one cycle
// share (as the binary's do). Every export cycle is a sampling pass, the
// callback, the per-worker series, OTLP encoding, gzip and the send to
// sink, an in-process receiver. It returns the process CPU per steady
// cycle; the provider is shut down before it returns.
func workerscopePhase(ctx context.Context, src *workerstest.StaticSource, sink *otlpSink, n int, cfg config) (time.Duration, error) {
	s, err := sampler.New(src, sampler.Options{MinInterval: cfg.interval / 2})
	if err != nil {
		return 0, err
	}
	defer s.Close()
	env := map[string]string{
		"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": sink.addr, // loopback host:port: plaintext
		"OTEL_METRIC_EXPORT_INTERVAL":         strconv.FormatInt(cfg.interval.Milliseconds(), 10),
		"OTEL_TRACES_EXPORTER":                "none",
		"OTEL_LOGS_EXPORTER":                  "none",
	}
	// Failed exports are counted (and fail the phase); the log would also
	// report the export in flight that Shutdown cancels.
	log := slog.New(slog.DiscardHandler)
	series := max(2*n, 2000) // the binary's per-worker series cap at --max-workers n
	arrivals := sink.arm(cfg.cycles + 2)
	defer sink.arm(0)
	ws := workerseries.New(instrumentation.Scope{Name: otelsetup.MeterName})
	p, err := otelsetup.NewProvider(ctx, otelsetup.ProviderOptions{
		Getenv:           func(k string) string { return env[k] },
		Producers:        []otelsetup.ReaderProducer{ws.Producer},
		CardinalityLimit: 2*series + 96,
		RuntimeMetrics:   true,
		Logger:           log,
	})
	if err != nil {
		return 0, fmt.Errorf("provider: %w", err)
	}
	_, err = otelmetrics.NewMetrics(p.Meter, otelmetrics.MetricsOptions{
		Sampler: s, Stats: src, MaxWorkerSeries: series, ExportErrors: p.ExportErrors, Logger: log, WorkerSeries: ws,
	})
	var d time.Duration
	if err != nil {
		err = fmt.Errorf("instruments: %w", err)
	} else {
		d, err = window(arrivals, cfg.cycles, phaseTimeout(cfg, n))
	}
	if e := p.ExportErrors(); e > 0 {
		err = errors.Join(err, fmt.Errorf("%d failed exports", e))
	}
	if serr := p.Shutdown(ctx); serr != nil {
		err = errors.Join(err, serr)
	}
	return d, err
}

// samplerPhase is the sampling pass alone: one warm-up pass, then cycles
// passes back to back; it returns the process CPU per pass.
func samplerPhase(ctx context.Context, s *sampler.Sampler, n, cycles int) (time.Duration, error) {
	if err := checkReport(s.Report(ctx), n); err != nil {
		return 0, err
	}
	cpu0 := processCPU()
	for range cycles {
		if r := s.Report(ctx); r.Err != nil {
			return 0, r.Err
		}
	}
	return (processCPU() - cpu0) / time.Duration(cycles), nil
}

// otlpSink is an in-process OTLP gRPC metrics receiver, like
// BenchmarkExportCycle's: its codec counts the request bytes without
// decoding them, so its own CPU is gRPC's framing and gzip decompression.
// While armed it reports each request's arrival.
type otlpSink struct {
	collectormetrics.UnimplementedMetricsServiceServer
	addr            string
	requests, bytes atomic.Int64

	mu       sync.Mutex
	arrivals chan arrival
	left     int
}

// arm makes the next k requests report their arrival on the returned
// channel (k = 0 disarms).
func (s *otlpSink) arm(k int) <-chan arrival {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.arrivals, s.left = make(chan arrival, k), k
	return s.arrivals
}

// Export implements collectormetrics.MetricsServiceServer.
func (s *otlpSink) Export(context.Context, *collectormetrics.ExportMetricsServiceRequest) (*collectormetrics.ExportMetricsServiceResponse, error) {
	cpu := processCPU()
	s.requests.Add(1)
	s.mu.Lock()
	if s.left > 0 {
		s.left--
		s.arrivals <- arrival{cpu: cpu}
	}
	s.mu.Unlock()
	return &collectormetrics.ExportMetricsServiceResponse{}, nil
}

type countingCodec struct{ sink *otlpSink }

func (c countingCodec) Marshal(v any) ([]byte, error) { return proto.Marshal(v.(proto.Message)) }
func (c countingCodec) Unmarshal(data []byte, _ any) error {
	c.sink.bytes.Add(int64(len(data)))
	return nil
}
func (c countingCodec) Name() string { return "proto" }

func startOTLPSink(tb testing.TB) *otlpSink {
	tb.Helper()
	_ = gzip.Name // registers the gzip codec on the server side
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	sink := &otlpSink{addr: lis.Addr().String()}
	srv := grpc.NewServer(grpc.ForceServerCodec(countingCodec{sink}))
	collectormetrics.RegisterMetricsServiceServer(srv, sink)
	go func() { _ = srv.Serve(lis) }()
	tb.Cleanup(srv.Stop)
	return sink
}
