package otelsetup

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
	collectormetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// capturingReceiver is an OTLP gRPC metrics receiver that keeps every
// request.
type capturingReceiver struct {
	collectormetrics.UnimplementedMetricsServiceServer
	mu   sync.Mutex
	reqs []*collectormetrics.ExportMetricsServiceRequest
}

func (r *capturingReceiver) Export(_ context.Context, req *collectormetrics.ExportMetricsServiceRequest) (*collectormetrics.ExportMetricsServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = append(r.reqs, req)
	return &collectormetrics.ExportMetricsServiceResponse{}, nil
}

func (r *capturingReceiver) take(t *testing.T) *collectormetrics.ExportMetricsServiceRequest {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.reqs) != 1 {
		t.Fatalf("%d requests received, want 1", len(r.reqs))
	}
	req := r.reqs[0]
	r.reqs = nil
	return req
}

func newListener(t *testing.T) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return lis
}

func startReceiver(t *testing.T) (*capturingReceiver, string) {
	t.Helper()
	lis := newListener(t)
	r := &capturingReceiver{}
	srv := grpc.NewServer()
	collectormetrics.RegisterMetricsServiceServer(srv, r)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return r, lis.Addr().String()
}

// upstreamRequest is what the OTLP gRPC exporter itself sends for rm.
func upstreamRequest(t *testing.T, rm *metricdata.ResourceMetrics) (*collectormetrics.ExportMetricsServiceRequest, error) {
	t.Helper()
	r, addr := startReceiver(t)
	exp, err := otlpmetricgrpc.New(context.Background(), otlpmetricgrpc.WithEndpoint(addr), otlpmetricgrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	defer exp.Shutdown(context.Background())
	exportErr := exp.Export(context.Background(), rm)
	return r.take(t), exportErr
}

func decode(t *testing.T, b []byte) *collectormetrics.ExportMetricsServiceRequest {
	t.Helper()
	var req collectormetrics.ExportMetricsServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		t.Fatalf("our encoding does not decode: %v", err)
	}
	return &req
}

// sameAsUpstream encodes rm twice with one encoder (the second time from
// its attribute cache) and checks both against the upstream exporter's
// request, field by field, presence included.
func sameAsUpstream(t *testing.T, rm *metricdata.ResourceMetrics) {
	t.Helper()
	want, wantErr := upstreamRequest(t, rm)
	enc := newOTLPEncoder()
	for pass := range 2 {
		b, err := enc.encode(rm)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("pass %d: error %v, upstream's %v", pass, err, wantErr)
		}
		if got := decode(t, b); !proto.Equal(want, got) {
			t.Fatalf("pass %d: differs from the OTLP exporter's request\nupstream:\n%s\nours:\n%s", pass,
				prototext.Format(want), prototext.Format(got))
		}
	}
}

func at(sec int64) time.Time { return time.Unix(sec, 123456789) }

// everyKind is a ResourceMetrics with every aggregation, value type,
// attribute type and optional field the encoder handles, and zero values
// where proto3 leaves a field out.
func everyKind() *metricdata.ResourceMetrics {
	res := resource.NewWithAttributes("https://opentelemetry.io/schemas/1.43.0",
		attribute.String("service.name", "workerscope"), attribute.Int("n", 3))
	attrs := attribute.NewSet(
		attribute.String("s", "v"), attribute.String("empty", ""), attribute.Bool("t", true), attribute.Bool("f", false),
		attribute.Int64("i", -7), attribute.Int64("zero", 0), attribute.Float64("x", 1.5), attribute.Float64("negzero", math.Copysign(0, -1)),
		attribute.StringSlice("ss", []string{"a", ""}), attribute.Int64Slice("is", []int64{1, -1}),
		attribute.Float64Slice("fs", []float64{0.5}), attribute.BoolSlice("bs", []bool{true, false}),
		attribute.StringSlice("none", nil), attribute.ByteSlice("bytes", []byte{0, 1}),
		attribute.Slice("mixed", attribute.StringValue("a"), attribute.IntValue(2)),
		attribute.Map("map", attribute.String("k", "v"), attribute.Int("n", 1)),
		attribute.KeyValue{Key: "emptyvalue"},
	)
	small := attribute.NewSet(attribute.String("workerscope.worker.id", "w-1"), attribute.Int("process.pid", 42))
	none := attribute.NewSet()
	ex := []metricdata.Exemplar[float64]{
		{FilteredAttributes: []attribute.KeyValue{attribute.String("f", "1")}, Time: at(5), Value: 0.25,
			SpanID: []byte{1, 2, 3, 4, 5, 6, 7, 8}, TraceID: []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}},
		{Time: at(6), Value: 0},
	}
	exInt := []metricdata.Exemplar[int64]{{Time: at(7), Value: 0}, {Value: -3, SpanID: []byte{9}}}
	return &metricdata.ResourceMetrics{
		Resource: res,
		ScopeMetrics: []metricdata.ScopeMetrics{
			{
				Scope: instrumentation.Scope{Name: "github.com/workerscope/workerscope/telemetry", Version: "v1",
					SchemaURL: "https://example.com/s", Attributes: attribute.NewSet(attribute.String("scope", "a"))},
				Metrics: []metricdata.Metrics{
					{Name: "gauge.int", Description: "d", Unit: "By", Data: metricdata.Gauge[int64]{DataPoints: []metricdata.DataPoint[int64]{
						{Attributes: attrs, StartTime: at(1), Time: at(2), Value: 0, Exemplars: exInt},
						{Attributes: small, Time: at(2), Value: -1},
						{Attributes: none, Value: math.MaxInt64},
					}}},
					{Name: "gauge.float", Data: metricdata.Gauge[float64]{DataPoints: []metricdata.DataPoint[float64]{
						{Attributes: small, StartTime: at(1), Time: at(2), Value: 0},
						{Attributes: small, Time: at(2), Value: math.Copysign(0, -1)},
						{Attributes: small, Time: time.Unix(-5, 0), Value: math.Inf(1)},
					}}},
					{Name: "gauge.empty", Data: metricdata.Gauge[float64]{}},
					{Name: "sum.cumulative", Unit: "s", Data: metricdata.Sum[float64]{Temporality: metricdata.CumulativeTemporality, IsMonotonic: true,
						DataPoints: []metricdata.DataPoint[float64]{{Attributes: small, StartTime: at(1), Time: at(2), Value: 3.25, Exemplars: ex}}}},
					{Name: "sum.delta", Data: metricdata.Sum[int64]{Temporality: metricdata.DeltaTemporality,
						DataPoints: []metricdata.DataPoint[int64]{{Attributes: attrs, StartTime: at(1), Time: at(2), Value: 9}}}},
					{Name: "sum.invalid", Data: metricdata.Sum[int64]{DataPoints: []metricdata.DataPoint[int64]{{Value: 1}}}},
				},
			},
			{Scope: instrumentation.Scope{Name: "second"}, Metrics: []metricdata.Metrics{
				{Name: "hist", Description: "h", Unit: "s", Data: metricdata.Histogram[float64]{Temporality: metricdata.CumulativeTemporality,
					DataPoints: []metricdata.HistogramDataPoint[float64]{
						{Attributes: small, StartTime: at(1), Time: at(2), Count: 3, Sum: 1.5, Bounds: []float64{0, 0.5, 1},
							BucketCounts: []uint64{0, 1, 2, 0}, Min: metricdata.NewExtrema(0.0), Max: metricdata.NewExtrema(1.0), Exemplars: ex},
						{Attributes: none, Time: at(2)},
					}}},
				{Name: "hist.int", Data: metricdata.Histogram[int64]{Temporality: metricdata.DeltaTemporality,
					DataPoints: []metricdata.HistogramDataPoint[int64]{{Attributes: attrs, Count: 1, Sum: -4, BucketCounts: []uint64{1},
						Min: metricdata.NewExtrema[int64](-4), Max: metricdata.NewExtrema[int64](-4), Exemplars: exInt}}}},
				{Name: "hist.invalid", Data: metricdata.Histogram[int64]{}},
				{Name: "exp", Data: metricdata.ExponentialHistogram[float64]{Temporality: metricdata.CumulativeTemporality,
					DataPoints: []metricdata.ExponentialHistogramDataPoint[float64]{
						{Attributes: small, StartTime: at(1), Time: at(2), Count: 5, Sum: 2.5, Scale: -2, ZeroCount: 1, ZeroThreshold: 1e-9,
							PositiveBucket: metricdata.ExponentialBucket{Offset: -3, Counts: []uint64{1, 0, 300}},
							NegativeBucket: metricdata.ExponentialBucket{Offset: 2, Counts: []uint64{1}},
							Exemplars:      ex, Min: metricdata.NewExtrema(-1.0), Max: metricdata.NewExtrema(4.0)},
						{Attributes: none},
					}}},
				{Name: "exp.int", Data: metricdata.ExponentialHistogram[int64]{Temporality: metricdata.DeltaTemporality,
					DataPoints: []metricdata.ExponentialHistogramDataPoint[int64]{{Attributes: attrs, Scale: 3, Exemplars: exInt}}}},
				{Name: "summary", Data: metricdata.Summary{DataPoints: []metricdata.SummaryDataPoint{
					{Attributes: small, StartTime: at(1), Time: at(2), Count: 4, Sum: 10,
						QuantileValues: []metricdata.QuantileValue{{Quantile: 0, Value: 1}, {Quantile: 0.5, Value: 0}, {Quantile: 1, Value: 9}}},
					{Attributes: none},
				}}},
			}},
			{}, // a scope with nothing
		},
	}
}

func TestOTLPEncoderMatchesTheExporter(t *testing.T) {
	sameAsUpstream(t, everyKind())
}

func TestOTLPEncoderEmpty(t *testing.T) {
	sameAsUpstream(t, &metricdata.ResourceMetrics{})
	sameAsUpstream(t, &metricdata.ResourceMetrics{Resource: resource.Empty()})
}

// TestOTLPEncoderLarge: lengths of several bytes (data points over 127
// bytes, metrics and the request over 16 KiB and 2 MiB), and attribute
// sets coming and going between exports.
func TestOTLPEncoderLarge(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	build := func(workers, offset int) *metricdata.ResourceMetrics {
		var pts []metricdata.DataPoint[float64]
		var ipts []metricdata.DataPoint[int64]
		for i := range workers {
			id := fmt.Sprintf("w-%d", i+offset)
			set := attribute.NewSet(attribute.String("workerscope.worker.id", id), attribute.Int("process.pid", 1000+i),
				attribute.String("workerscope.worker.key", fmt.Sprintf("session-%0*d", rng.IntN(200), i)))
			pts = append(pts, metricdata.DataPoint[float64]{Attributes: set, StartTime: at(1), Time: at(2), Value: rng.Float64()})
			ipts = append(ipts, metricdata.DataPoint[int64]{Attributes: set, StartTime: at(1), Time: at(2), Value: rng.Int64()})
		}
		return &metricdata.ResourceMetrics{Resource: resource.Default(), ScopeMetrics: []metricdata.ScopeMetrics{{
			Scope: instrumentation.Scope{Name: "s"},
			Metrics: []metricdata.Metrics{
				{Name: "f", Data: metricdata.Gauge[float64]{DataPoints: pts}},
				{Name: "i", Data: metricdata.Sum[int64]{Temporality: metricdata.CumulativeTemporality, DataPoints: ipts}},
			},
		}}}
	}
	enc := newOTLPEncoder()
	for _, c := range []struct{ workers, offset int }{{5000, 0}, {3000, 2500}, {20, 0}} {
		rm := build(c.workers, c.offset)
		want, _ := upstreamRequest(t, rm)
		b, err := enc.encode(rm)
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(want, decode(t, b)) {
			t.Fatalf("%d workers from %d: differs from the OTLP exporter's request", c.workers, c.offset)
		}
		if got := len(enc.attrs); got != c.workers {
			t.Errorf("%d attribute encodings cached after an export of %d sets", got, c.workers)
		}
	}
}
