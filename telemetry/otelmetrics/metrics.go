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
	// export cycle's cost. The callback keeps this cache (and nothing
	// else) between collections; attrMu serializes readers that collect
	// concurrently (OTLP and Prometheus).
	attrMu     sync.Mutex
	attrs      map[string]*workerAttrs
	attrGen    uint64
	unobserved int  // workers over MaxWorkerSeries in the last collection
	warned     bool // the cap was logged
}

// observables are the contract's observable instruments, by role.
type observables struct {
	cpuTime, cpuUtil, uptime, idle                                    metric.Float64Observable
	memUsage, memVirtual, threads, fds, faults, zombie, state         metric.Int64Observable
	procs, defunct, requests                                          metric.Int64Observable
	pool, poolLimit, spawns, spawnFailures, exits, crashLooping, sse  metric.Int64Observable
	samplerErrors, linesSkipped, eventsDropped, orphans, exportErrors metric.Int64Observable
	profilingErrors, limitHits, memLimit, procLimit                   metric.Int64Observable
	unobserved, logRecordsDropped                                     metric.Int64Observable
	cpuLimit                                                          metric.Float64Observable
	selfCPU, selfUptime                                               metric.Float64Observable
	selfMem, selfVirtual, selfThreads, selfFDs                        metric.Int64Observable
	all                                                               []metric.Observable

	// GenAI (genai.go)
	agentSkipped, budgetsExceeded metric.Int64Observable
	sessionTokens                 metric.Int64Observable
	sessionCost, budgetUtil       metric.Float64Observable
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

type workerAttrs struct {
	pid               int
	key               string
	gen               uint64
	all, user, system metric.MeasurementOption
	major, minor      metric.MeasurementOption
	set               []attribute.KeyValue // id, pid, key: the base of per-state sets
	state             map[workers.State]metric.MeasurementOption
	tokIn, tokOut     metric.MeasurementOption // gen_ai.token.type
	budTokens, budUSD metric.MeasurementOption // workerscope.budget
}

// workerAttrsLocked returns w's cached measurement options.
func (m *Metrics) workerAttrsLocked(w *sampler.WorkerReport) *workerAttrs {
	a := m.attrs[w.ID]
	if a == nil || a.pid != w.PID || a.key != w.Key {
		id, pid := attribute.String(attrkey.WorkerID, w.ID), attribute.Int(attrkey.ProcessPID, w.PID)
		key := attribute.String(attrkey.WorkerKey, w.Key)
		if m.opts.DropWorkerKey {
			key = id // a duplicate key collapses in the set
		}
		with := func(kv ...attribute.KeyValue) metric.MeasurementOption {
			return metric.WithAttributeSet(attribute.NewSet(append([]attribute.KeyValue{id, pid, key}, kv...)...))
		}
		a = &workerAttrs{
			pid: w.PID, key: w.Key,
			all:       with(),
			user:      with(attribute.String(attrkey.CPUMode, "user")),
			system:    with(attribute.String(attrkey.CPUMode, "system")),
			major:     with(attribute.String(attrkey.FaultType, "major")),
			minor:     with(attribute.String(attrkey.FaultType, "minor")),
			set:       []attribute.KeyValue{id, pid, key},
			state:     map[workers.State]metric.MeasurementOption{},
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

func (a *workerAttrs) stateOpt(s workers.State) metric.MeasurementOption {
	opt, ok := a.state[s]
	if !ok {
		opt = metric.WithAttributeSet(attribute.NewSet(append(append([]attribute.KeyValue(nil), a.set...), attribute.String(attrkey.WorkerState, string(s)))...))
		a.state[s] = opt
	}
	return opt
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

// registerObservables registers the contract's observable instruments.
func registerObservables(meter metric.Meter) (observables, error) {
	r := newRegistry(meter, true)
	var in observables
	take(r, MetricWorkerCPUTime, &in.cpuTime)
	take(r, MetricWorkerCPUUtilization, &in.cpuUtil)
	take(r, MetricWorkerMemoryUsage, &in.memUsage)
	take(r, MetricWorkerMemoryVirtual, &in.memVirtual)
	take(r, MetricWorkerThreadCount, &in.threads)
	take(r, MetricWorkerFDCount, &in.fds)
	take(r, MetricWorkerUptime, &in.uptime)
	take(r, MetricWorkerPagingFaults, &in.faults)
	take(r, MetricWorkerIdleTime, &in.idle)
	take(r, MetricWorkerZombie, &in.zombie)
	take(r, MetricWorkerState, &in.state)
	take(r, MetricWorkerProcesses, &in.procs)
	take(r, MetricWorkerDefunct, &in.defunct)
	take(r, MetricWorkerRequests, &in.requests)
	take(r, MetricWorkers, &in.pool)
	take(r, MetricWorkersLimit, &in.poolLimit)
	take(r, MetricWorkersUnobserved, &in.unobserved)
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
	take(r, MetricSessionCost, &in.sessionCost)
	take(r, MetricSessionTokens, &in.sessionTokens)
	take(r, MetricSessionBudgetUsage, &in.budgetUtil)
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
	in, err := registerObservables(meter)
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
	return m, nil
}

// fixedAttrs are the attribute options that never change, built once.
type fixedAttrs struct {
	user, system, invalid, oversize metric.MeasurementOption
	states                          []metric.MeasurementOption // by workers.States
	reasons                         []metric.MeasurementOption // by workers.ExitReasons
	limits                          []metric.MeasurementOption // by workers.LimitNames
	budgets                         []metric.MeasurementOption // by workers.BudgetNames
}

func newFixedAttrs() fixedAttrs {
	f := fixedAttrs{
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
		m.observeWorkers(o, r)
		m.attrMu.Lock()
		o.ObserveInt64(in.unobserved, int64(m.unobserved))
		m.attrMu.Unlock()
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

// observeWorkers observes the per-worker instruments, at most
// MaxWorkerSeries workers.
func (m *Metrics) observeWorkers(o metric.Observer, r *sampler.Report) {
	in := &m.inst
	m.attrMu.Lock()
	defer m.attrMu.Unlock()
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
		o.ObserveFloat64(in.uptime, w.Uptime.Seconds(), a.all)
		o.ObserveFloat64(in.idle, w.Idle.Seconds(), a.all)
		o.ObserveInt64(in.zombie, boolInt(w.Zombie), a.all)
		if w.State != workers.StateExited {
			o.ObserveInt64(in.state, 1, a.stateOpt(w.State))
		}
		o.ObserveInt64(in.requests, int64(w.Requests), a.all)
		if ag := w.Agent; ag != nil {
			m.observeSession(o, ag, a)
		}
		if w.Err != nil {
			continue // usage unknown this pass: leave those series out
		}
		o.ObserveFloat64(in.cpuTime, w.CPUUser, a.user)
		o.ObserveFloat64(in.cpuTime, w.CPUSystem, a.system)
		if w.HasRate {
			o.ObserveFloat64(in.cpuUtil, w.CPUUtilUser, a.user)
			o.ObserveFloat64(in.cpuUtil, w.CPUUtilSystem, a.system)
		}
		o.ObserveInt64(in.memUsage, w.RSSBytes, a.all)
		o.ObserveInt64(in.memVirtual, w.VMSBytes, a.all)
		o.ObserveInt64(in.threads, int64(w.Threads), a.all)
		o.ObserveInt64(in.fds, int64(w.FDs), a.all)
		o.ObserveInt64(in.faults, int64(w.MajorFaults), a.major)
		o.ObserveInt64(in.faults, int64(w.MinorFaults), a.minor)
		o.ObserveInt64(in.procs, int64(w.Processes), a.all)
		o.ObserveInt64(in.defunct, int64(w.Defunct), a.all)
	}
	for id, a := range m.attrs {
		if a.gen != m.attrGen {
			delete(m.attrs, id)
		}
	}
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
