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

	"github.com/workerscope/workerscope/workers"
)

// Span attribute keys. worker.id, worker.key, process.pid, rpc.method and
// error.type are the metrics' attributes; the cost attributes are
// workerscope's own.
const (
	AttrWorkerID      = "worker.id"
	AttrWorkerKey     = "worker.key"
	AttrProcessPID    = "process.pid"
	AttrRPCMethod     = "rpc.method"
	AttrErrorType     = "error.type"
	AttrCostCPU       = "workerscope.cost.cpu_time"
	AttrCostCPUUser   = "workerscope.cost.cpu_time.user"
	AttrCostCPUSystem = "workerscope.cost.cpu_time.system"
	AttrCostMemPeak   = "workerscope.cost.memory.peak"
	AttrCostProcesses = "workerscope.cost.processes"
	AttrCostShared    = "workerscope.cost.shared"
	AttrEvents        = "workerscope.events"
	AttrEventsDropped = "workerscope.events.dropped"
	// AttrRun is true on the span of a command whose response was followed
	// by a streamed run (pi's prompt): the span and its cost cover the run.
	AttrRun = "workerscope.run"
	// AttrRunEnd says how the run ended: agent_end, worker_exit or
	// max_duration.
	AttrRunEnd = "workerscope.run.end"
	// AttrResponseTime is the time from the command's arrival to its
	// response, in seconds, on a run's span (whose duration is the run's).
	AttrResponseTime = "workerscope.response_time"
)

// OtherMethod is the span name and rpc.method of command types past the
// cap (semconv's value for a method it cannot name).
const OtherMethod = "_OTHER"

// Defaults for zero Options fields.
const (
	DefaultMaxMethods = 64
	DefaultMaxEvents  = 128
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
	// clients): past it, spans are named OtherMethod. Default 64.
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
		opts.MaxMethods = DefaultMaxMethods
	}
	if opts.MaxEvents <= 0 {
		opts.MaxEvents = DefaultMaxEvents
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
		return OtherMethod
	}
	t.methods[typ] = typ
	return typ
}

// StartCommand starts the command's span as a child of whatever span ctx
// carries (the caller's, from Middleware). It implements
// workers.CommandTracer.
func (t *Tracer) StartCommand(ctx context.Context, key, typ string) (context.Context, workers.CommandSpan) {
	name := t.method(typ)
	attrs := make([]attribute.KeyValue, 0, 2)
	attrs = append(attrs, attribute.String(AttrRPCMethod, name))
	if !t.dropKey {
		attrs = append(attrs, attribute.String(AttrWorkerKey, key))
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
		attrs = append(attrs, attribute.String(AttrWorkerID, r.WorkerID), attribute.Int(AttrProcessPID, r.PID))
	}
	events, cost := r.Events, r.Cost
	var end []trace.SpanEndOption
	if r.Run != nil {
		events, cost = r.Run.Events, r.Run.Cost
		attrs = append(attrs, attribute.Bool(AttrRun, true), attribute.String(AttrRunEnd, string(r.Run.End)),
			attribute.Float64(AttrResponseTime, r.Duration.Seconds()))
		attrs = s.agentAttributes(attrs)
		switch {
		case r.Run.Budget != "" && r.ErrorType == "":
			attrs = append(attrs, attribute.String(AttrErrorType, workers.CodeBudgetExceeded), attribute.String(AttrBudget, r.Run.Budget))
			s.span.SetStatus(codes.Error, "the session went past its "+r.Run.Budget+" budget: the run was aborted")
		case r.Run.End == workers.RunEndWorkerExit && r.ErrorType == "":
			attrs = append(attrs, attribute.String(AttrErrorType, workers.CodeWorkerExit))
			s.span.SetStatus(codes.Error, "the worker exited during the run")
		}
	} else if !r.Start.IsZero() {
		// Ended later than its response (a run was awaited and none
		// came): the span still ends at the response.
		end = append(end, trace.WithTimestamp(r.Start.Add(r.Duration)))
	}
	attrs = append(attrs, attribute.Int(AttrEvents, events))
	if d := s.dropped.Load(); d > 0 {
		attrs = append(attrs, attribute.Int64(AttrEventsDropped, d))
	}
	attrs = append(attrs, CostAttributes(cost)...)
	if r.ErrorType != "" {
		attrs = append(attrs, attribute.String(AttrErrorType, r.ErrorType))
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

// CostAttributes are the cost attributes of c (none when nil).
func CostAttributes(c *workers.Cost) []attribute.KeyValue {
	if c == nil {
		return nil
	}
	return []attribute.KeyValue{
		attribute.Float64(AttrCostCPU, c.CPU().Seconds()),
		attribute.Float64(AttrCostCPUUser, c.CPUUser.Seconds()),
		attribute.Float64(AttrCostCPUSystem, c.CPUSystem.Seconds()),
		attribute.Int64(AttrCostMemPeak, c.MemoryPeak),
		attribute.Int(AttrCostProcesses, c.Processes),
		attribute.Bool(AttrCostShared, c.Shared),
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
