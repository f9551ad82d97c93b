package otelsetup

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/trace"

	"github.com/workerscope/workerscope/internal/testutil"
)

// TestExemplarsKeptAndCompact: a histogram recorded within a sampled span
// still carries the span as its exemplar, and the observable points
// collected after it get an exemplar slice no longer than the exemplars
// held (the SDK's default reservoirs would hand each of them an empty one
// sized to the histogram's buckets): none before the first exemplar, one
// slot after it.
func TestExemplarsKeptAndCompact(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	p, err := NewProvider(context.Background(), ProviderOptions{
		Getenv:  testutil.Env("OTEL_METRICS_EXPORTER", "none", "OTEL_TRACES_EXPORTER", "none", "OTEL_LOGS_EXPORTER", "none"),
		Readers: []sdkmetric.Reader{reader},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	hist, err := p.Meter.Float64Histogram("workerscope.test.duration", metric.WithExplicitBucketBoundaries(0.1, 1, 10))
	if err != nil {
		t.Fatal(err)
	}
	gauge, err := p.Meter.Int64ObservableGauge("workerscope.test.gauge")
	if err != nil {
		t.Fatal(err)
	}
	const points = 50
	if _, err := p.Meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for i := range points {
			o.ObserveInt64(gauge, int64(i), metric.WithAttributes(attribute.Int("i", i)))
		}
		return nil
	}, gauge); err != nil {
		t.Fatal(err)
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	hist.Record(context.Background(), 5) // no span: no exemplar

	for round := range 4 {
		held := 0
		if round > 0 {
			hist.Record(ctx, 0.5)
			held = 1
		}
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
		var sawHist, sawGauge bool
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				switch d := m.Data.(type) {
				case metricdata.Histogram[float64]:
					sawHist = true
					if len(d.DataPoints) != 1 || len(d.DataPoints[0].Exemplars) != held {
						t.Fatalf("round %d: histogram %+v, want one point with %d exemplars", round, d.DataPoints, held)
					}
					if held == 0 {
						continue
					}
					e := d.DataPoints[0].Exemplars[0]
					if trace.TraceID(e.TraceID) != sc.TraceID() || trace.SpanID(e.SpanID) != sc.SpanID() || e.Value != 0.5 {
						t.Errorf("round %d: exemplar %+v, want the span's 0.5", round, e)
					}
				case metricdata.Gauge[int64]:
					sawGauge = true
					if len(d.DataPoints) != points {
						t.Fatalf("round %d: %d gauge points, want %d", round, len(d.DataPoints), points)
					}
					for _, dp := range d.DataPoints {
						if cap(dp.Exemplars) > held {
							t.Fatalf("round %d: an observable point got an exemplar slice of capacity %d, with %d exemplars held", round, cap(dp.Exemplars), held)
						}
					}
				}
			}
		}
		if !sawHist || !sawGauge {
			t.Fatalf("round %d: histogram %v, gauge %v", round, sawHist, sawGauge)
		}
	}
}
