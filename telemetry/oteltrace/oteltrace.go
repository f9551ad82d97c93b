package oteltrace

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/workerscope/workerscope/telemetry/attrkey"
	"github.com/workerscope/workerscope/workers"
)

// otherMethod is the span name and rpc.method of command types past the
// cap (semconv's value for a method it cannot name).
const otherMethod = "_OTHER"

// Defaults for zero Options fields.
const (
	defaultMaxMethods = 64
	defaultMaxEvents  = 128
)

// ScopeName is the instrumentation scope of the spans.
const ScopeName = "github.com/workerscope/workerscope/telemetry/oteltrace"

// Options configures a Tracer.
type Options struct {
	// TracerProvider makes the spans. Required.
	TracerProvider trace.TracerProvider
	// Version is the instrumentation scope's version.
	Version string
	// DropWorkerKey leaves worker.key out (--metrics-worker-key=false):
	// session keys may be user identifiers.
	DropWorkerKey bool
	// MaxMethods bounds the distinct span names (command types come from
	// clients): past it, spans are named otherMethod. Default 64.
	MaxMethods int
	// MaxEvents caps the span events per span; the rest are counted in
	// workerscope.events.dropped. Default 128.
	MaxEvents int
	// AgentName is gen_ai.agent.name on invoke_agent spans (e.g. "pi").
	AgentName string
}

// Tracer makes one span per command. Create it with New; it is safe for
// concurrent use.
type Tracer struct {
	tracer    trace.Tracer
	dropKey   bool
	maxEvents int
	agentName string

	mu         sync.Mutex
	methods    map[string]string
	maxMethods int
}

// New returns a Tracer.
func New(opts Options) *Tracer {
	if opts.MaxMethods <= 0 {
		opts.MaxMethods = defaultMaxMethods
	}
	if opts.MaxEvents <= 0 {
		opts.MaxEvents = defaultMaxEvents
	}
	return &Tracer{
		tracer:     opts.TracerProvider.Tracer(ScopeName, trace.WithInstrumentationVersion(opts.Version)),
		dropKey:    opts.DropWorkerKey,
		maxEvents:  opts.MaxEvents,
		agentName:  opts.AgentName,
		methods:    make(map[string]string),
		maxMethods: opts.MaxMethods,
	}
}

// method bounds a command type to the first MaxMethods distinct ones.
func (t *Tracer) method(typ string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if m, ok := t.methods[typ]; ok {
		return m
	}
	if typ == "" || len(t.methods) >= t.maxMethods {
		return otherMethod
	}
	t.methods[typ] = typ
	return typ
}

// StartCommand starts the command's span as a child of whatever span ctx
// carries (the caller's, from Middleware). It implements
// workers.CommandTracer.
func (t *Tracer) StartCommand(ctx context.Context, key, typ string) (context.Context, workers.CommandSpan) {
	name := t.method(typ)
	attrs := make([]attribute.KeyValue, 0, 3)
	attrs = append(attrs, attribute.String(attrkey.RPCSystem, attrkey.RPCSystemJSONL), attribute.String(attrkey.RPCMethod, name))
	if !t.dropKey {
		attrs = append(attrs, attribute.String(attrkey.WorkerKey, key))
	}
	ctx, span := t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	if !span.IsRecording() {
		return ctx, noRecord{span}
	}
	return ctx, &commandSpan{span: span, max: t.maxEvents, t: t, ctx: ctx, key: key}
}

// commandSpan is one command's span.
type commandSpan struct {
	span    trace.Span
	max     int
	events  atomic.Int64
	dropped atomic.Int64

	// the run's agent steps (genai.go)
	t     *Tracer
	ctx   context.Context // with span, the parent of the steps' spans
	key   string
	agent agentSums
}

// Event adds ev as a span event named after its type, up to the cap.
func (s *commandSpan) Event(ev workers.Event) {
	if s.events.Add(1) > int64(s.max) {
		s.dropped.Add(1)
		return
	}
	name := ev.Type
	if len(name) > 64 {
		name = name[:64]
	}
	if name == "" {
		name = "event"
	}
	s.span.AddEvent(name)
}

// End sets the worker, the cost and the outcome, and ends the span: at
// the command's response, or at the end of the run that followed it.
func (s *commandSpan) End(r workers.RPCResult) {
	attrs := make([]attribute.KeyValue, 0, 16)
	if r.WorkerID != "" {
		attrs = append(attrs, attribute.String(attrkey.WorkerID, r.WorkerID), attribute.Int(attrkey.ProcessPID, r.PID))
	}
	events, cost := r.Events, r.Cost
	var end []trace.SpanEndOption
	if r.Run != nil {
		events, cost = r.Run.Events, r.Run.Cost
		attrs = append(attrs, attribute.Bool(attrkey.Run, true), attribute.String(attrkey.RunEnd, string(r.Run.End)),
			attribute.Float64(attrkey.ResponseTime, r.Duration.Seconds()))
		attrs = s.agentAttributes(attrs)
		switch {
		case r.Run.Budget != "" && r.ErrorType == "":
			attrs = append(attrs, attribute.String(attrkey.ErrorType, workers.CodeBudgetExceeded), attribute.String(attrkey.Budget, r.Run.Budget))
			s.span.SetStatus(codes.Error, "the session went past its "+r.Run.Budget+" budget: the run was aborted")
		case r.Run.End == workers.RunEndWorkerExit && r.ErrorType == "":
			attrs = append(attrs, attribute.String(attrkey.ErrorType, workers.CodeWorkerExit))
			s.span.SetStatus(codes.Error, "the worker exited during the run")
		}
	} else if !r.Start.IsZero() {
		// Ended later than its response (a run was awaited and none
		// came): the span still ends at the response.
		end = append(end, trace.WithTimestamp(r.Start.Add(r.Duration)))
	}
	attrs = append(attrs, attribute.Int(attrkey.Events, events))
	if d := s.dropped.Load(); d > 0 {
		attrs = append(attrs, attribute.Int64(attrkey.EventsDropped, d))
	}
	attrs = append(attrs, costAttributes(cost)...)
	if r.ErrorType != "" {
		attrs = append(attrs, attribute.String(attrkey.ErrorType, r.ErrorType))
		desc := r.ErrorType
		if r.Err != nil {
			desc = truncate(r.Err.Error(), 512)
		} else if r.ErrorType == workers.CodeWorkerError {
			desc = "the worker answered success:false"
		}
		s.span.SetStatus(codes.Error, desc)
	}
	s.span.SetAttributes(attrs...)
	s.span.End(end...)
}

// TraceID is the span's trace id, for the page's last commands.
func (s *commandSpan) TraceID() string { return s.span.SpanContext().TraceID().String() }

// costAttributes are the cost attributes of c (none when nil).
func costAttributes(c *workers.Cost) []attribute.KeyValue {
	if c == nil {
		return nil
	}
	return []attribute.KeyValue{
		attribute.Float64(attrkey.CostCPU, c.CPU().Seconds()),
		attribute.Float64(attrkey.CostCPUUser, c.CPUUser.Seconds()),
		attribute.Float64(attrkey.CostCPUSystem, c.CPUSystem.Seconds()),
		attribute.Int64(attrkey.CostMemPeak, c.MemoryPeak),
		attribute.Int(attrkey.CostProcesses, c.Processes),
		attribute.Bool(attrkey.CostShared, c.Shared),
	}
}

// noRecord is a span that is not recorded (sampled out): it only ends.
type noRecord struct{ span trace.Span }

func (noRecord) Event(workers.Event)     {}
func (n noRecord) End(workers.RPCResult) { n.span.End() }
func (noRecord) TraceID() string         { return "" }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Middleware continues the caller's trace: prop (OTEL_PROPAGATORS, which
// otelsetup.Provider.Propagator resolves; W3C tracecontext and baggage when
// none is given) extracts the request's headers into r.Context(): a
// traceparent (and tracestate) makes the command spans it causes its
// children, a baggage header puts its members in the context. With an
// empty propagator (OTEL_PROPAGATORS=none) nothing is read. It starts no
// span itself.
func Middleware(h http.Handler, prop ...propagation.TextMapPropagator) http.Handler {
	prop = slices.DeleteFunc(prop, func(p propagation.TextMapPropagator) bool { return p == nil })
	if len(prop) == 0 {
		prop = []propagation.TextMapPropagator{propagation.TraceContext{}, propagation.Baggage{}}
	}
	p := propagation.NewCompositeTextMapPropagator(prop...)
	fields := p.Fields()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, f := range fields {
			if r.Header.Get(f) != "" {
				h.ServeHTTP(w, r.WithContext(p.Extract(r.Context(), propagation.HeaderCarrier(r.Header))))
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}
