//go:build linux

package otelmetrics

import (
	"bytes"
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/workerscope/workerscope/telemetry/attrkey"
	"github.com/workerscope/workerscope/workers"
	"github.com/workerscope/workerscope/workers/workerstest"
)

// histPoints are the data points of the named float64 histogram.
func histPoints(t *testing.T, r *sdkmetric.ManualReader, name string) []metricdata.HistogramDataPoint[float64] {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if h, ok := m.Data.(metricdata.Histogram[float64]); ok && m.Name == name {
				return h.DataPoints
			}
		}
	}
	return nil
}

// pointFor finds the point with exactly the attributes kv.
func pointFor(pts []metricdata.HistogramDataPoint[float64], kv ...attribute.KeyValue) (metricdata.HistogramDataPoint[float64], bool) {
	want := attribute.NewSet(kv...)
	for _, p := range pts {
		if p.Attributes.Equals(&want) {
			return p, true
		}
	}
	return metricdata.HistogramDataPoint[float64]{}, false
}

func hasExemplar(p metricdata.HistogramDataPoint[float64], sc trace.SpanContext) bool {
	tid, sid := sc.TraceID(), sc.SpanID()
	for _, e := range p.Exemplars {
		if bytes.Equal(e.TraceID, tid[:]) && bytes.Equal(e.SpanID, sid[:]) {
			return true
		}
	}
	return false
}

// TestRecordRPCCostAndExemplar: workerscope.rpc.cpu_time records a
// command's measured cost by rpc.method and error.type (nothing without a
// cost); workerscope.rpc.duration carries the sampled span of the
// command's context as its exemplar (none without one); the run
// histograms record a run's duration and cost, with worker_exit as
// error.type when the worker exited during it.
func TestRecordRPCCostAndExemplar(t *testing.T) {
	m := workerstest.NewDemoManager(t)
	l := startLocal(t, m, nil)
	reader, mm := l.reader, l.recorder

	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	ctx, span := tp.Tracer("test").Start(context.Background(), "prompt")
	defer span.End()
	sc := span.SpanContext()

	mm.RecordRPC(workers.RPCResult{Type: "prompt", Duration: 250 * time.Millisecond, Context: ctx,
		Cost: &workers.Cost{CPUUser: 1500 * time.Millisecond, CPUSystem: 500 * time.Millisecond}})
	mm.RecordRPC(workers.RPCResult{Type: "get_state", ErrorType: workers.CodeTimeout, Duration: time.Second}) // no context, no cost
	mm.RecordRun(workers.RPCResult{Type: "prompt", Context: ctx,
		Run: &workers.Run{Duration: 3 * time.Second, End: workers.RunEndAgentEnd, Cost: &workers.Cost{CPUUser: 2500 * time.Millisecond}}})
	mm.RecordRun(workers.RPCResult{Type: "prompt", Context: ctx,
		Run: &workers.Run{Duration: time.Second, End: workers.RunEndWorkerExit, Cost: &workers.Cost{CPUSystem: 100 * time.Millisecond}}})
	mm.RecordRun(workers.RPCResult{Type: "prompt"}) // no run: ignored
	mm.RecordRun(workers.RPCResult{Type: "prompt", Context: ctx,
		Run: &workers.Run{Duration: time.Second, End: workers.RunEndAgentEnd, Budget: workers.BudgetSpend}})

	sys := attribute.String(attrkey.RPCSystem, attrkey.RPCSystemJSONL) // on every command's and run's point
	prompt := attribute.String(attrkey.RPCMethod, "prompt")
	getState := attribute.String(attrkey.RPCMethod, "get_state")
	timeout := attribute.String(attrkey.ErrorType, workers.CodeTimeout)
	exit := attribute.String(attrkey.ErrorType, workers.CodeWorkerExit)

	cpu := histPoints(t, reader, MetricRPCCPUTime)
	if p, ok := pointFor(cpu, sys, prompt); !ok || p.Count != 1 || p.Sum != 2.0 {
		t.Errorf("rpc.cpu_time{prompt}: %+v (found %v), want one command of 2 s", p, ok)
	}
	if _, ok := pointFor(cpu, sys, getState, timeout); ok || len(cpu) != 1 {
		t.Errorf("rpc.cpu_time has %d points, want none for a command without a cost", len(cpu))
	}

	dur := histPoints(t, reader, MetricRPCDuration)
	p, ok := pointFor(dur, sys, prompt)
	if !ok || p.Count != 1 || p.Sum != 0.25 {
		t.Fatalf("rpc.duration{prompt}: %+v (found %v)", p, ok)
	}
	if !hasExemplar(p, sc) {
		t.Errorf("rpc.duration{prompt} exemplars %+v, want the span %s/%s", p.Exemplars, sc.TraceID(), sc.SpanID())
	}
	if q, ok := pointFor(dur, sys, getState, timeout); !ok || q.Count != 1 || len(q.Exemplars) != 0 {
		t.Errorf("rpc.duration{get_state, timeout}: %+v (found %v), want one, without an exemplar", q, ok)
	}

	runDur := histPoints(t, reader, MetricRunDuration)
	if p, ok := pointFor(runDur, sys, prompt); !ok || p.Count != 1 || p.Sum != 3 || !hasExemplar(p, sc) {
		t.Errorf("run.duration{prompt}: %+v (found %v), want one 3 s run with the span as exemplar", p, ok)
	}
	if p, ok := pointFor(runDur, sys, prompt, exit); !ok || p.Count != 1 {
		t.Errorf("run.duration{prompt, worker_exit}: %+v (found %v)", p, ok)
	}
	if p, ok := pointFor(runDur, sys, prompt, attribute.String(attrkey.ErrorType, workers.CodeBudgetExceeded)); !ok || p.Count != 1 {
		t.Errorf("run.duration{prompt, budget_exceeded}: %+v (found %v)", p, ok)
	}
	runCPU := histPoints(t, reader, MetricRunCPUTime)
	if p, ok := pointFor(runCPU, sys, prompt); !ok || p.Sum != 2.5 {
		t.Errorf("run.cpu_time{prompt}: %+v (found %v), want 2.5 s", p, ok)
	}
	if p, ok := pointFor(runCPU, sys, prompt, exit); !ok || p.Sum != 0.1 {
		t.Errorf("run.cpu_time{prompt, worker_exit}: %+v (found %v), want 0.1 s", p, ok)
	}
}
