package otelmetrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/workerscope/workerscope/telemetry/attrkey"
	"github.com/workerscope/workerscope/telemetry/sampler"
	"github.com/workerscope/workerscope/workers"
)

// StatsSource is the supervisor's counters. *workers.Manager implements it.
type StatsSource interface {
	Stats() workers.Stats
}

// MetricsOptions configures the instruments.
type MetricsOptions struct {
	// Sampler feeds every per-worker instrument. Required.
	Sampler *sampler.Sampler
	// Stats feeds the pool and supervisor instruments. Required.
	Stats StatsSource
	// DropWorkerKey leaves the worker.key attribute out (session keys may
	// be user identifiers, or too many for a backend's budget).
	DropWorkerKey bool
	// MaxWorkerSeries caps how many workers one collection observes, a
	// deliberate cardinality limit. Default 2000.
	MaxWorkerSeries int
	// SSEClients reports open event streams; nil reports none.
	SSEClients func() int64
	// ExportErrors reports failed exports; nil reports none.
	ExportErrors func() uint64
	// ProfilingUploadErrors reports failed profile uploads; nil reports
	// none.
	ProfilingUploadErrors func() uint64
	// Limits reports the per-worker limits and what enforces them; nil
	// reports none.
	Limits func() workers.LimitsInfo
	// Started is when the supervisor process started (process.uptime).
	// Default: when NewMetrics ran.
	Started time.Time
	// Gauges are extra process gauges (see Gauges).
	Gauges *Gauges
	// Logger says once when workers are left out by MaxWorkerSeries.
	// Default slog.Default().
	Logger *slog.Logger
	// SessionTokenBudget and SessionSpendBudgetUSD are the Manager's
	// session budgets (0 = none), for workerscope.session.budget.utilization.
	SessionTokenBudget    int64
	SessionSpendBudgetUSD float64
	// WorkerSeries, when set, produces the per-worker series (the
	// WorkerMetrics) for the readers it was given to, instead of
	// observable instruments on the meter: the same data, at a fraction of
	// the SDK's cost per data point. NewMetrics registers no per-worker
	// instrument then, and binds it. When nil they are observable
	// instruments.
	WorkerSeries WorkerSeriesProducer
}

// WorkerSeriesProducer produces the per-worker series from a Metrics'
// measurements (MeasureWorkers); package workerseries has one for the
// OpenTelemetry SDK's readers.
type WorkerSeriesProducer interface {
	// Bind hands the producer the Metrics to measure with; NewMetrics
	// calls it once.
	Bind(*Metrics) error
}

// Metrics holds the observable instruments and their one callback: what
// the sampler and the Manager's counters say at each collection.
type Metrics struct {
	opts  MetricsOptions
	reg   metric.Registration
	inst  observables
	fixed fixedAttrs

	// attribute sets per worker, built once per worker lifetime: building
	// and sorting the sets per worker per collection was a fifth of the
	// export cycle's cost. The callback (or MeasureWorkers, for a
	// WorkerSeriesProducer) keeps this cache (and nothing else) between
	// collections; attrMu serializes readers that collect concurrently
	// (OTLP and Prometheus).
	attrMu     sync.Mutex
	attrs      map[string]*workerAttrs
	attrGen    uint64
	unobserved int  // workers over MaxWorkerSeries in the last collection
	warned     bool // the cap was logged
}

// observables are the contract's observable instruments, by role.
type observables struct {
	pool, poolLimit, spawns, spawnFailures, exits, crashLooping, sse  metric.Int64Observable
	samplerErrors, linesSkipped, eventsDropped, orphans, exportErrors metric.Int64Observable
	profilingErrors, limitHits, memLimit, procLimit                   metric.Int64Observable
	logRecordsDropped                                                 metric.Int64Observable
	cpuLimit                                                          metric.Float64Observable
	selfCPU, selfUptime                                               metric.Float64Observable
	selfMem, selfVirtual, selfThreads, selfFDs                        metric.Int64Observable
	all                                                               []metric.Observable

	// GenAI (genai.go)
	agentSkipped, budgetsExceeded metric.Int64Observable

	// The per-worker instruments, by WorkerMetric (each is float64 or
	// int64; the other is nil); not registered when a
	// WorkerSeriesProducer produces them.
	workerF [workerMetrics]metric.Float64Observable
	workerI [workerMetrics]metric.Int64Observable
}

// WorkerMetric is one of the per-worker metrics: every metric with the
// worker's attributes, and workerscope.worker.unobserved, computed with
// them. WorkerMetrics defines them.
type WorkerMetric int

const (
	wmCPUTime WorkerMetric = iota
	wmCPUUtil
	wmMemUsage
	wmMemVirtual
	wmThreads
	wmFDs
	wmUptime
	wmFaults
	wmIdle
	wmZombie
	wmState
	wmProcs
	wmDefunct
	wmRequests
	wmUnobserved
	wmSessionCost
	wmSessionTokens
	wmBudgetUtil
	workerMetrics // how many
)

// WorkerMetrics returns the per-worker metrics' definitions from the
// contract, indexed by WorkerMetric.
func WorkerMetrics() []MetricDef {
	defs := make([]MetricDef, workerMetrics)
	for _, d := range Contract() {
		for wm := range workerMetrics {
			if wm.name() == d.Name {
				defs[wm] = d
			}
		}
	}
	return defs
}

// name is the metric's contract name.
func (w WorkerMetric) name() string {
	switch w {
	case wmCPUTime:
		return MetricWorkerCPUTime
	case wmCPUUtil:
		return MetricWorkerCPUUtilization
	case wmMemUsage:
		return MetricWorkerMemoryUsage
	case wmMemVirtual:
		return MetricWorkerMemoryVirtual
	case wmThreads:
		return MetricWorkerThreadCount
	case wmFDs:
		return MetricWorkerFDCount
	case wmUptime:
		return MetricWorkerUptime
	case wmFaults:
		return MetricWorkerPagingFaults
	case wmIdle:
		return MetricWorkerIdleTime
	case wmZombie:
		return MetricWorkerZombie
	case wmState:
		return MetricWorkerState
	case wmProcs:
		return MetricWorkerProcesses
	case wmDefunct:
		return MetricWorkerDefunct
	case wmRequests:
		return MetricWorkerRequests
	case wmUnobserved:
		return MetricWorkersUnobserved
	case wmSessionCost:
		return MetricSessionCost
	case wmSessionTokens:
		return MetricSessionTokens
	case wmBudgetUtil:
		return MetricSessionBudgetUsage
	}
	return ""
}

// recorded are the contract's synchronous instruments, by role: what
// happens between collections (commands, runs, model and tool calls,
// sampling passes).
type recorded struct {
	rpcDuration, rpcCPUTime, samplerDuration metric.Float64Histogram
	runDuration, runCPUTime                  metric.Float64Histogram
	tokenUsage                               metric.Int64Histogram
	opDuration, toolDuration, toolCPU        metric.Float64Histogram
	cost                                     metric.Float64Counter
}

const maxCommandTypes = 64

// otherMethod is semconv's rpc.method value for methods past the cap.
const otherMethod = "_OTHER"

// seriesAttrs is one attribute set, with its measurement option for the
// observable instruments.
type seriesAttrs struct {
	set attribute.Set
	opt metric.MeasurementOption
}

func newSeriesAttrs(kv ...attribute.KeyValue) *seriesAttrs {
	a := &seriesAttrs{set: attribute.NewSet(kv...)}
	a.opt = metric.WithAttributeSet(a.set)
	return a
}

type workerAttrs struct {
	pid               int
	key               string
	gen               uint64
	all, user, system *seriesAttrs
	major, minor      *seriesAttrs
	set               []attribute.KeyValue // id, pid, key: the base of per-state sets
	state             map[workers.State]*seriesAttrs
	tokIn, tokOut     *seriesAttrs // gen_ai.token.type
	budTokens, budUSD *seriesAttrs // workerscope.budget
}

// workerAttrsLocked returns w's cached attribute sets.
func (m *Metrics) workerAttrsLocked(w *sampler.WorkerReport) *workerAttrs {
	a := m.attrs[w.ID]
	if a == nil || a.pid != w.PID || a.key != w.Key {
		id, pid := attribute.String(attrkey.WorkerID, w.ID), attribute.Int(attrkey.ProcessPID, w.PID)
		key := attribute.String(attrkey.WorkerKey, w.Key)
		if m.opts.DropWorkerKey {
			key = id // a duplicate key collapses in the set
		}
		with := func(kv ...attribute.KeyValue) *seriesAttrs {
			return newSeriesAttrs(append([]attribute.KeyValue{id, pid, key}, kv...)...)
		}
		a = &workerAttrs{
			pid: w.PID, key: w.Key,
			all:       with(),
			user:      with(attribute.String(attrkey.CPUMode, "user")),
			system:    with(attribute.String(attrkey.CPUMode, "system")),
			major:     with(attribute.String(attrkey.FaultType, "major")),
			minor:     with(attribute.String(attrkey.FaultType, "minor")),
			set:       []attribute.KeyValue{id, pid, key},
			state:     map[workers.State]*seriesAttrs{},
			tokIn:     with(attribute.String(attrkey.GenAITokenType, tokenInput)),
			tokOut:    with(attribute.String(attrkey.GenAITokenType, tokenOutput)),
			budTokens: with(attribute.String(attrkey.Budget, workers.BudgetTokens)),
			budUSD:    with(attribute.String(attrkey.Budget, workers.BudgetSpend)),
		}
		m.attrs[w.ID] = a
	}
	a.gen = m.attrGen
	return a
}

func (a *workerAttrs) stateAttrs(s workers.State) *seriesAttrs {
	sa, ok := a.state[s]
	if !ok {
		sa = newSeriesAttrs(append(append([]attribute.KeyValue(nil), a.set...), attribute.String(attrkey.WorkerState, string(s)))...)
		a.state[s] = sa
	}
	return sa
}

// workerSink takes the per-worker measurements: the observable
// instruments (observerSink) or a WorkerSink (setSink).
type workerSink interface {
	float(m WorkerMetric, a *seriesAttrs, v float64)
	int(m WorkerMetric, a *seriesAttrs, v int64)
}

// WorkerSink takes the per-worker measurements of one collection
// (MeasureWorkers): each series' attribute set and value. The sets are
// the same values from one collection to the next while the series
// lives.
type WorkerSink interface {
	Float64(m WorkerMetric, attrs attribute.Set, v float64)
	Int64(m WorkerMetric, attrs attribute.Set, v int64)
}

type setSink struct{ s WorkerSink }

func (s setSink) float(m WorkerMetric, a *seriesAttrs, v float64) { s.s.Float64(m, a.set, v) }
func (s setSink) int(m WorkerMetric, a *seriesAttrs, v int64)     { s.s.Int64(m, a.set, v) }

// MeasureWorkers measures the per-worker metrics from the sampler's
// current Report (the one the observable instruments read in the same
// collection) into sink, for at most MaxWorkerSeries workers. It reports
// false, measuring nothing, when there is no Report (ctx ended before the
// first pass).
func (m *Metrics) MeasureWorkers(ctx context.Context, sink WorkerSink) bool {
	r := m.opts.Sampler.Report(ctx)
	if r == nil {
		return false
	}
	m.attrMu.Lock()
	defer m.attrMu.Unlock()
	m.observeWorkersLocked(setSink{sink}, r)
	return true
}

// observerSink observes the measurements on the per-worker instruments.
type observerSink struct {
	o  metric.Observer
	in *observables
}

func (s observerSink) float(m WorkerMetric, a *seriesAttrs, v float64) {
	s.o.ObserveFloat64(s.in.workerF[m], v, a.opt)
}

func (s observerSink) int(m WorkerMetric, a *seriesAttrs, v int64) {
	s.o.ObserveInt64(s.in.workerI[m], v, a.opt)
}

// register creates d's instrument on meter, as its Kind and Value say.
func register(meter metric.Meter, d MetricDef) (any, error) {
	unit, desc := metric.WithUnit(d.Unit), metric.WithDescription(d.Description)
	switch {
	case d.Kind == ObservableCounter && d.Value == Float64:
		return meter.Float64ObservableCounter(d.Name, unit, desc)
	case d.Kind == ObservableCounter && d.Value == Int64:
		return meter.Int64ObservableCounter(d.Name, unit, desc)
	case d.Kind == ObservableUpDownCounter && d.Value == Float64:
		return meter.Float64ObservableUpDownCounter(d.Name, unit, desc)
	case d.Kind == ObservableUpDownCounter && d.Value == Int64:
		return meter.Int64ObservableUpDownCounter(d.Name, unit, desc)
	case d.Kind == ObservableGauge && d.Value == Float64:
		return meter.Float64ObservableGauge(d.Name, unit, desc)
	case d.Kind == ObservableGauge && d.Value == Int64:
		return meter.Int64ObservableGauge(d.Name, unit, desc)
	case d.Kind == Histogram && d.Value == Float64:
		return meter.Float64Histogram(d.Name, unit, desc, metric.WithExplicitBucketBoundaries(d.Buckets...))
	case d.Kind == Histogram && d.Value == Int64:
		return meter.Int64Histogram(d.Name, unit, desc, metric.WithExplicitBucketBoundaries(d.Buckets...))
	case d.Kind == Counter && d.Value == Float64:
		return meter.Float64Counter(d.Name, unit, desc)
	}
	return nil, fmt.Errorf("otelmetrics: %s: no instrument for kind %s of %s", d.Name, d.Kind, d.Value)
}

// registry creates the contract's instruments of one side, synchronous
// or observable, each as the Go type its role is declared with.
type registry struct {
	meter       metric.Meter
	observable  bool                 // the side: observable kinds, or the others
	defs        map[string]MetricDef // the contract's metrics of this side
	taken       map[string]bool
	observables []metric.Observable
	errs        []error
}

func newRegistry(meter metric.Meter, observable bool) *registry {
	r := &registry{meter: meter, observable: observable, defs: map[string]MetricDef{}, taken: map[string]bool{}}
	for _, d := range Contract() {
		if d.Kind.Observable() == observable {
			r.defs[d.Name] = d
		}
	}
	return r
}

// take registers the contract's metric name on r's meter into *dst; the
// contract's Kind and Value must give dst's type.
func take[T any](r *registry, name string, dst *T) {
	d, ok := r.defs[name]
	if !ok {
		r.errs = append(r.errs, fmt.Errorf("otelmetrics: %s is not an instrument of this side of the contract", name))
		return
	}
	inst, err := register(r.meter, d)
	if err != nil {
		r.errs = append(r.errs, err)
		return
	}
	if *dst, ok = inst.(T); !ok {
		r.errs = append(r.errs, fmt.Errorf("otelmetrics: %s is a %T in the contract, used as %T", name, inst, *dst))
		return
	}
	r.taken[name] = true
	if o, ok := inst.(metric.Observable); ok {
		r.observables = append(r.observables, o)
	}
}

// err reports every failed registration and every metric of r's side of
// the contract that no role took.
func (r *registry) err() error {
	for name := range r.defs {
		if !r.taken[name] {
			r.errs = append(r.errs, fmt.Errorf("otelmetrics: %s is in the contract but no instrument records it", name))
		}
	}
	return errors.Join(r.errs...)
}

// registerObservables registers the contract's observable instruments;
// with produced, the per-worker ones are left to a WorkerSeriesProducer.
func registerObservables(meter metric.Meter, produced bool) (observables, error) {
	r := newRegistry(meter, true)
	var in observables
	for wm := range workerMetrics {
		switch name := wm.name(); {
		case produced:
			if _, ok := r.defs[name]; !ok {
				r.errs = append(r.errs, fmt.Errorf("otelmetrics: %s is not an observable metric of the contract", name))
			}
			r.taken[name] = true
		case r.defs[name].Value == Float64:
			take(r, name, &in.workerF[wm])
		default:
			take(r, name, &in.workerI[wm])
		}
	}
	take(r, MetricWorkers, &in.pool)
	take(r, MetricWorkersLimit, &in.poolLimit)
	take(r, MetricSpawns, &in.spawns)
	take(r, MetricSpawnFailures, &in.spawnFailures)
	take(r, MetricExits, &in.exits)
	take(r, MetricCrashLooping, &in.crashLooping)
	take(r, MetricLogRecordsDropped, &in.logRecordsDropped)
	take(r, MetricSSEClients, &in.sse)
	take(r, MetricSamplerErrors, &in.samplerErrors)
	take(r, MetricLinesSkipped, &in.linesSkipped)
	take(r, MetricEventsDropped, &in.eventsDropped)
	take(r, MetricOrphansReaped, &in.orphans)
	take(r, MetricExportErrors, &in.exportErrors)
	take(r, MetricProfilingUploadErrors, &in.profilingErrors)
	take(r, MetricLimitHits, &in.limitHits)
	take(r, MetricWorkerMemoryLimit, &in.memLimit)
	take(r, MetricWorkerProcessesLimit, &in.procLimit)
	take(r, MetricWorkerCPULimit, &in.cpuLimit)
	take(r, MetricGenAIEventsSkipped, &in.agentSkipped)
	take(r, MetricBudgetsExceeded, &in.budgetsExceeded)
	take(r, MetricProcessCPUTime, &in.selfCPU)
	take(r, MetricProcessMemoryUsage, &in.selfMem)
	take(r, MetricProcessMemoryVirtual, &in.selfVirtual)
	take(r, MetricProcessThreadCount, &in.selfThreads)
	take(r, MetricProcessFDCount, &in.selfFDs)
	take(r, MetricProcessUptime, &in.selfUptime)
	in.all = r.observables
	return in, r.err()
}

// registerRecorded registers the contract's synchronous instruments.
func registerRecorded(meter metric.Meter) (recorded, error) {
	r := newRegistry(meter, false)
	var in recorded
	take(r, MetricRPCDuration, &in.rpcDuration)
	take(r, MetricRPCCPUTime, &in.rpcCPUTime)
	take(r, MetricRunDuration, &in.runDuration)
	take(r, MetricRunCPUTime, &in.runCPUTime)
	take(r, MetricSamplerDuration, &in.samplerDuration)
	take(r, MetricGenAITokenUsage, &in.tokenUsage)
	take(r, MetricGenAIOpDuration, &in.opDuration)
	take(r, MetricGenAICost, &in.cost)
	take(r, MetricGenAIToolDuration, &in.toolDuration)
	take(r, MetricGenAIToolCPUTime, &in.toolCPU)
	return in, r.err()
}

// NewMetrics registers the contract's observable instruments on meter,
// all with ONE callback that reads the shared Report (the SDK binds
// With…Callback options to the first instrument of a name only, and one
// callback means one sampling pass per collection). The synchronous ones
// are the Recorder's.
func NewMetrics(meter metric.Meter, opts MetricsOptions) (*Metrics, error) {
	if opts.Sampler == nil || opts.Stats == nil {
		return nil, errors.New("otelmetrics: MetricsOptions needs Sampler and Stats")
	}
	if opts.MaxWorkerSeries <= 0 {
		opts.MaxWorkerSeries = 2000
	}
	if opts.Started.IsZero() {
		opts.Started = time.Now()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	in, err := registerObservables(meter, opts.WorkerSeries != nil)
	if err != nil {
		return nil, err
	}
	extra, extraInstruments, err := opts.Gauges.register(meter)
	if err != nil {
		return nil, err
	}
	m := &Metrics{opts: opts, inst: in, fixed: newFixedAttrs(), attrs: make(map[string]*workerAttrs)}
	m.reg, err = meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		m.observe(ctx, o)
		extra(o)
		return nil
	}, append(in.all, extraInstruments...)...)
	if err != nil {
		return nil, err
	}
	if opts.WorkerSeries != nil {
		if err := opts.WorkerSeries.Bind(m); err != nil {
			_ = m.reg.Unregister()
			return nil, fmt.Errorf("otelmetrics: worker series: %w", err)
		}
	}
	return m, nil
}

// fixedAttrs are the attribute options that never change, built once.
type fixedAttrs struct {
	none                            seriesAttrs // no attributes
	user, system, invalid, oversize metric.MeasurementOption
	states                          []metric.MeasurementOption // by workers.States
	reasons                         []metric.MeasurementOption // by workers.ExitReasons
	limits                          []metric.MeasurementOption // by workers.LimitNames
	budgets                         []metric.MeasurementOption // by workers.BudgetNames
}

func newFixedAttrs() fixedAttrs {
	f := fixedAttrs{
		none:     seriesAttrs{set: attribute.NewSet(), opt: metric.WithAttributeSet(attribute.NewSet())},
		user:     metric.WithAttributes(attribute.String(attrkey.CPUMode, "user")),
		system:   metric.WithAttributes(attribute.String(attrkey.CPUMode, "system")),
		invalid:  metric.WithAttributes(attribute.String(attrkey.LineReason, "invalid")),
		oversize: metric.WithAttributes(attribute.String(attrkey.LineReason, "oversize")),
	}
	for _, s := range workers.States {
		f.states = append(f.states, metric.WithAttributes(attribute.String(attrkey.WorkerState, string(s))))
	}
	for _, r := range workers.ExitReasons {
		f.reasons = append(f.reasons, metric.WithAttributes(attribute.String(attrkey.ExitReason, string(r))))
	}
	for _, l := range workers.LimitNames {
		f.limits = append(f.limits, metric.WithAttributes(attribute.String(attrkey.Limit, l)))
	}
	for _, b := range workers.BudgetNames {
		f.budgets = append(f.budgets, metric.WithAttributes(attribute.String(attrkey.Budget, b)))
	}
	return f
}

// observe is the one callback: every observable instrument from one
// Report and one Stats.
func (m *Metrics) observe(ctx context.Context, o metric.Observer) {
	in, f := &m.inst, &m.fixed
	if r := m.opts.Sampler.Report(ctx); r != nil {
		if m.opts.WorkerSeries == nil {
			m.attrMu.Lock()
			m.observeWorkersLocked(observerSink{o, in}, r)
			m.attrMu.Unlock()
		}
		if self := r.Self; self.Err == nil {
			o.ObserveFloat64(in.selfCPU, self.CPUUser, f.user)
			o.ObserveFloat64(in.selfCPU, self.CPUSystem, f.system)
			o.ObserveInt64(in.selfMem, self.RSSBytes)
			o.ObserveInt64(in.selfVirtual, self.VMSBytes)
			o.ObserveInt64(in.selfThreads, int64(self.Threads))
			o.ObserveInt64(in.selfFDs, int64(self.FDs))
		}
	}
	o.ObserveFloat64(in.selfUptime, time.Since(m.opts.Started).Seconds())

	st := m.opts.Stats.Stats()
	for i, s := range workers.States {
		o.ObserveInt64(in.pool, int64(st.ByState[s]), f.states[i])
	}
	for i, reason := range workers.ExitReasons {
		o.ObserveInt64(in.exits, int64(st.Exits[reason]), f.reasons[i])
	}
	o.ObserveInt64(in.poolLimit, int64(st.MaxWorkers))
	o.ObserveInt64(in.spawns, int64(st.Spawns))
	o.ObserveInt64(in.spawnFailures, int64(st.SpawnFailures))
	o.ObserveInt64(in.crashLooping, int64(st.CrashLooping))
	o.ObserveInt64(in.linesSkipped, int64(st.InvalidLines), f.invalid)
	o.ObserveInt64(in.linesSkipped, int64(st.OversizeLines), f.oversize)
	o.ObserveInt64(in.eventsDropped, int64(st.EventsDropped))
	o.ObserveInt64(in.logRecordsDropped, int64(st.StderrLinesDropped))
	o.ObserveInt64(in.orphans, int64(st.OrphansReaped))
	o.ObserveInt64(in.samplerErrors, int64(m.opts.Sampler.Errors()))
	o.ObserveInt64(in.sse, callInt(m.opts.SSEClients))
	o.ObserveInt64(in.exportErrors, int64(callUint(m.opts.ExportErrors)))
	o.ObserveInt64(in.profilingErrors, int64(callUint(m.opts.ProfilingUploadErrors)))
	for i, name := range workers.LimitNames {
		o.ObserveInt64(in.limitHits, int64(st.LimitHits[name]), f.limits[i])
	}
	for i, name := range workers.BudgetNames {
		o.ObserveInt64(in.budgetsExceeded, int64(st.BudgetsExceeded[name]), f.budgets[i])
	}
	o.ObserveInt64(in.agentSkipped, int64(st.AgentEventsSkipped))
	if m.opts.Limits != nil {
		li := m.opts.Limits()
		by := func(limit string) metric.MeasurementOption {
			return metric.WithAttributes(attribute.String(attrkey.Enforcement, li.Enforcement[limit]))
		}
		if li.MemoryMax > 0 {
			o.ObserveInt64(in.memLimit, li.MemoryMax, by(workers.LimitMemory))
		}
		if li.PidsMax > 0 {
			o.ObserveInt64(in.procLimit, li.PidsMax, by(workers.LimitPids))
		}
		if li.CPUMax > 0 {
			o.ObserveFloat64(in.cpuLimit, li.CPUMax, by(workers.LimitCPU))
		}
	}
}

// observeWorkersLocked measures the per-worker metrics into sink, for at
// most MaxWorkerSeries workers, and workerscope.worker.unobserved. The
// caller holds attrMu.
func (m *Metrics) observeWorkersLocked(sink workerSink, r *sampler.Report) {
	m.attrGen++
	m.unobserved = max(len(r.Workers)-m.opts.MaxWorkerSeries, 0)
	if m.unobserved > 0 && !m.warned {
		m.warned = true
		m.opts.Logger.Warn("more live workers than the per-worker series cap: the rest have no per-worker series (counted in workerscope.worker.unobserved)",
			"workers", len(r.Workers), "cap", m.opts.MaxWorkerSeries)
	}
	for i := range r.Workers[:min(len(r.Workers), m.opts.MaxWorkerSeries)] {
		w := &r.Workers[i]
		a := m.workerAttrsLocked(w)
		sink.float(wmUptime, a.all, w.Uptime.Seconds())
		sink.float(wmIdle, a.all, w.Idle.Seconds())
		sink.int(wmZombie, a.all, boolInt(w.Zombie))
		if w.State != workers.StateExited {
			sink.int(wmState, a.stateAttrs(w.State), 1)
		}
		sink.int(wmRequests, a.all, int64(w.Requests))
		if ag := w.Agent; ag != nil {
			m.observeSession(sink, ag, a)
		}
		if w.Err != nil {
			continue // usage unknown this pass: leave those series out
		}
		sink.float(wmCPUTime, a.user, w.CPUUser)
		sink.float(wmCPUTime, a.system, w.CPUSystem)
		if w.HasRate {
			sink.float(wmCPUUtil, a.user, w.CPUUtilUser)
			sink.float(wmCPUUtil, a.system, w.CPUUtilSystem)
		}
		sink.int(wmMemUsage, a.all, w.RSSBytes)
		sink.int(wmMemVirtual, a.all, w.VMSBytes)
		sink.int(wmThreads, a.all, int64(w.Threads))
		sink.int(wmFDs, a.all, int64(w.FDs))
		sink.int(wmFaults, a.major, int64(w.MajorFaults))
		sink.int(wmFaults, a.minor, int64(w.MinorFaults))
		sink.int(wmProcs, a.all, int64(w.Processes))
		sink.int(wmDefunct, a.all, int64(w.Defunct))
	}
	for id, a := range m.attrs {
		if a.gen != m.attrGen {
			delete(m.attrs, id)
		}
	}
	sink.int(wmUnobserved, &m.fixed.none, int64(m.unobserved))
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func callInt(f func() int64) int64 {
	if f == nil {
		return 0
	}
	return f()
}

func callUint(f func() uint64) uint64 {
	if f == nil {
		return 0
	}
	return f()
}

// Close unregisters the callback.
func (m *Metrics) Close() error { return m.reg.Unregister() }
