package oteltrace_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/workerscope/workerscope/telemetry/attrkey"
	"github.com/workerscope/workerscope/telemetry/oteltrace"
	"github.com/workerscope/workerscope/workers"
)

func newTracer(t *testing.T, opts oteltrace.Options) (*oteltrace.Tracer, *tracetest.SpanRecorder) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	opts.TracerProvider = tp
	return oteltrace.New(opts), rec
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

// TestSpanWithCost: one command → one client span named after its type,
// with the worker, the cost and capped events.
func TestSpanWithCost(t *testing.T) {
	t.Parallel()
	tr, rec := newTracer(t, oteltrace.Options{MaxEvents: 2})
	ctx, span := tr.StartCommand(context.Background(), "alice", "prompt")
	if !trace.SpanContextFromContext(ctx).IsValid() {
		t.Fatal("context carries no span")
	}
	for i := 0; i < 5; i++ {
		span.Event(workers.Event{Type: "message_update"})
	}
	span.End(workers.RPCResult{Key: "alice", Type: "prompt", WorkerID: "w1-1", PID: 42, Events: 5, Context: ctx,
		Cost: &workers.Cost{CPUUser: 1500 * time.Millisecond, CPUSystem: 500 * time.Millisecond, MemoryPeak: 64 << 20, Processes: 2}})
	if span.TraceID() != trace.SpanContextFromContext(ctx).TraceID().String() {
		t.Error("TraceID differs from the span's")
	}
	ended := rec.Ended()
	if len(ended) != 1 {
		t.Fatalf("%d spans", len(ended))
	}
	s := ended[0]
	if s.Name() != "prompt" || s.SpanKind() != trace.SpanKindClient {
		t.Errorf("name %q kind %v", s.Name(), s.SpanKind())
	}
	a := attrs(s)
	for k, want := range map[attribute.Key]any{
		attrkey.WorkerID: "w1-1", attrkey.WorkerKey: "alice", attrkey.ProcessPID: int64(42),
		attrkey.RPCMethod: "prompt", attrkey.CostCPU: 2.0, attrkey.CostCPUUser: 1.5,
		attrkey.CostCPUSystem: 0.5, attrkey.CostMemPeak: int64(64 << 20), attrkey.CostProcesses: int64(2),
		attrkey.CostShared: false, attrkey.EventsDropped: int64(3), attrkey.Events: int64(5),
	} {
		if got := a[k].AsInterface(); got != want {
			t.Errorf("%s = %v (%T), want %v", k, got, got, want)
		}
	}
	if _, ok := a[attrkey.ErrorType]; ok {
		t.Error("error.type on success")
	}
	if len(s.Events()) != 2 || s.Events()[0].Name != "message_update" {
		t.Errorf("events %v", s.Events())
	}
	if s.Status().Code == codes.Error {
		t.Error("error status on success")
	}
}

// TestSpanRun: a command followed by a run carries the run's cost and
// events, says how the run ended and when the response came; a run cut
// by the worker's exit is an error; a command whose awaited run never
// came ends at its response.
func TestSpanRun(t *testing.T) {
	t.Parallel()
	tr, rec := newTracer(t, oteltrace.Options{})
	start := time.Now().Add(-3 * time.Second)
	for _, end := range []workers.RunEnd{workers.RunEndAgentEnd, workers.RunEndWorkerExit} {
		_, span := tr.StartCommand(context.Background(), "carol", "prompt")
		span.End(workers.RPCResult{Type: "prompt", WorkerID: "w1-1", Start: start, Duration: 10 * time.Millisecond,
			Events: 0, Cost: &workers.Cost{CPUUser: 10 * time.Millisecond},
			Run: &workers.Run{Duration: 3 * time.Second, End: end, Events: 7, Cost: &workers.Cost{CPUUser: 2500 * time.Millisecond}}})
	}
	_, span := tr.StartCommand(context.Background(), "carol", "prompt")
	span.End(workers.RPCResult{Type: "prompt", Start: start, Duration: 20 * time.Millisecond})
	ended := rec.Ended()
	if len(ended) != 3 {
		t.Fatalf("%d spans", len(ended))
	}
	for i, s := range ended[:2] {
		a := attrs(s)
		for k, want := range map[attribute.Key]any{
			attrkey.Run: true, attrkey.CostCPU: 2.5, attrkey.Events: int64(7),
			attrkey.ResponseTime: 0.01, attrkey.RunEnd: []string{"agent_end", "worker_exit"}[i],
		} {
			if got := a[k].AsInterface(); got != want {
				t.Errorf("span %d: %s = %v, want %v", i, k, got, want)
			}
		}
		if failed := s.Status().Code == codes.Error && a[attrkey.ErrorType].AsString() == "worker_exit"; failed != (i == 1) {
			t.Errorf("span %d: status %v, error.type %v", i, s.Status(), a[attrkey.ErrorType])
		}
	}
	if !ended[2].EndTime().Equal(start.Add(20 * time.Millisecond)) {
		t.Errorf("end %v, want the response's time %v", ended[2].EndTime(), start.Add(20*time.Millisecond))
	}
	if _, ok := attrs(ended[2])[attrkey.Run]; ok {
		t.Error("workerscope.run on a command without a run")
	}
}

// TestSpanFailure: error.type and an error status; no cost, no worker key
// when dropped; names bounded.
func TestSpanFailure(t *testing.T) {
	t.Parallel()
	tr, rec := newTracer(t, oteltrace.Options{DropWorkerKey: true, MaxMethods: 2})
	for i := 0; i < 4; i++ {
		_, span := tr.StartCommand(context.Background(), "bob", fmt.Sprintf("t%d", i))
		span.End(workers.RPCResult{Key: "bob", ErrorType: workers.CodeTimeout, Err: errors.New("waiting: context deadline exceeded")})
	}
	ended := rec.Ended()
	names := []string{}
	for _, s := range ended {
		names = append(names, s.Name())
		a := attrs(s)
		if a[attrkey.ErrorType].AsString() != "timeout" || s.Status().Code != codes.Error {
			t.Errorf("%s: error.type %v status %v", s.Name(), a[attrkey.ErrorType], s.Status())
		}
		if _, ok := a[attrkey.WorkerKey]; ok {
			t.Error("workerscope.worker.key present with DropWorkerKey")
		}
		if _, ok := a[attrkey.CostCPU]; ok {
			t.Error("cost attributes without a cost")
		}
	}
	if fmt.Sprint(names) != "[t0 t1 _OTHER _OTHER]" {
		t.Errorf("names %v", names)
	}
}

// TestMiddlewareParent: a traceparent on the request becomes the parent
// of the command's span.
func TestMiddlewareParent(t *testing.T) {
	t.Parallel()
	tr, rec := newTracer(t, oteltrace.Options{})
	h := oteltrace.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, span := tr.StartCommand(r.Context(), "k", "get_state")
		span.End(workers.RPCResult{})
	}))
	req := httptest.NewRequest("POST", "/api/sessions/k/rpc", nil)
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	h.ServeHTTP(httptest.NewRecorder(), req)
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/api/sessions/k/rpc", nil))
	ended := rec.Ended()
	if len(ended) != 2 {
		t.Fatalf("%d spans", len(ended))
	}
	s := ended[0]
	if s.Parent().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || s.Parent().SpanID().String() != "00f067aa0ba902b7" || !s.Parent().IsRemote() {
		t.Errorf("parent %v", s.Parent())
	}
	if s.SpanContext().TraceID() != s.Parent().TraceID() {
		t.Error("span not in the caller's trace")
	}
	if ended[1].Parent().IsValid() {
		t.Error("a request without traceparent got a parent")
	}
}

// TestMiddlewarePropagators: the propagator given (OTEL_PROPAGATORS) decides
// what is read: by default the W3C trace context and baggage, with
// tracecontext alone no baggage, with none (empty) nothing.
func TestMiddlewarePropagators(t *testing.T) {
	for _, tc := range []struct {
		name           string
		prop           []propagation.TextMapPropagator
		trace, baggage bool
	}{
		{"default", nil, true, true},
		{"tracecontext", []propagation.TextMapPropagator{propagation.TraceContext{}}, true, false},
		{"baggage", []propagation.TextMapPropagator{propagation.Baggage{}}, false, true},
		{"none", []propagation.TextMapPropagator{propagation.NewCompositeTextMapPropagator()}, false, false},
	} {
		var gotTrace, gotBaggage bool
		h := oteltrace.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			gotTrace = trace.SpanContextFromContext(r.Context()).IsRemote()
			gotBaggage = baggage.FromContext(r.Context()).Member("tenant").Value() == "acme"
		}), tc.prop...)
		req := httptest.NewRequest("POST", "/api/sessions/k/rpc", nil)
		req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
		req.Header.Set("baggage", "tenant=acme")
		h.ServeHTTP(httptest.NewRecorder(), req)
		if gotTrace != tc.trace || gotBaggage != tc.baggage {
			t.Errorf("%s: trace context %v, baggage %v; want %v, %v", tc.name, gotTrace, gotBaggage, tc.trace, tc.baggage)
		}
	}
}
