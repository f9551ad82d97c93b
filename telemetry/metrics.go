package telemetry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/workerscope/workerscope/workers"
)

// StatsSource is the supervisor's counters. *workers.Manager implements it.
type StatsSource interface {
	Stats() workers.Stats
}

// MetricsOptions configures the instruments.
type MetricsOptions struct {
	// Sampler feeds every per-worker instrument. Required.
	Sampler *Sampler
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
	// Gauges are extra process gauges (see Gauges).
	Gauges *Gauges
}

// Metrics holds the registered instruments.
type Metrics struct {
	opts            MetricsOptions
	reg             metric.Registration
	rpcDuration     metric.Float64Histogram
	samplerDuration metric.Float64Histogram

	cmdMu    sync.Mutex
	commands map[string]attribute.KeyValue // bounded set of command types seen

	// attribute sets per worker, built once per worker lifetime: building
	// and sorting three sets per worker per collection was a fifth of the
	// export cycle's cost.
	attrMu  sync.Mutex
	attrs   map[string]*workerAttrs
	attrGen uint64
	skipped atomic.Uint64 // workers not observed over MaxWorkerSeries
}

const maxCommandTypes = 64

type workerAttrs struct {
	pid               int
	key               string
	gen               uint64
	all, user, system metric.MeasurementOption
}

// workerAttrsLocked returns w's cached measurement options.
func (m *Metrics) workerAttrsLocked(w *WorkerReport, userMode, systemMode attribute.KeyValue) *workerAttrs {
	a := m.attrs[w.ID]
	if a == nil || a.pid != w.PID || a.key != w.Key {
		id, pid := attribute.String(AttrWorkerID, w.ID), attribute.Int(AttrProcessPID, w.PID)
		key := attribute.String(AttrWorkerKey, w.Key)
		if m.opts.DropWorkerKey {
			key = id // a duplicate key collapses in the set
		}
		a = &workerAttrs{
			pid: w.PID, key: w.Key,
			all:    metric.WithAttributeSet(attribute.NewSet(id, pid, key)),
			user:   metric.WithAttributeSet(attribute.NewSet(id, pid, key, userMode)),
			system: metric.WithAttributeSet(attribute.NewSet(id, pid, key, systemMode)),
		}
		m.attrs[w.ID] = a
	}
	a.gen = m.attrGen
	return a
}

// NewMetrics registers every instrument of the contract on meter: all the
// observable ones with ONE callback that reads the shared Report (the SDK
// binds With…Callback options to the first instrument of a name only, and
// one callback means one sampling pass per collection).
func NewMetrics(meter metric.Meter, opts MetricsOptions) (*Metrics, error) {
	if opts.Sampler == nil || opts.Stats == nil {
		return nil, errors.New("telemetry: MetricsOptions needs Sampler and Stats")
	}
	if opts.MaxWorkerSeries <= 0 {
		opts.MaxWorkerSeries = 2000
	}
	defs := map[string]MetricDef{}
	for _, d := range Contract() {
		defs[d.Name] = d
	}
	var errs []error
	def := func(name string) MetricDef {
		d, ok := defs[name]
		if !ok {
			errs = append(errs, fmt.Errorf("telemetry: %s is not in the contract", name))
		}
		return d
	}
	fcounter := func(name string) metric.Float64ObservableCounter {
		d := def(name)
		i, err := meter.Float64ObservableCounter(name, metric.WithUnit(d.Unit), metric.WithDescription(d.Description))
		errs = append(errs, err)
		return i
	}
	fgauge := func(name string) metric.Float64ObservableGauge {
		d := def(name)
		i, err := meter.Float64ObservableGauge(name, metric.WithUnit(d.Unit), metric.WithDescription(d.Description))
		errs = append(errs, err)
		return i
	}
	igauge := func(name string) metric.Int64ObservableGauge {
		d := def(name)
		i, err := meter.Int64ObservableGauge(name, metric.WithUnit(d.Unit), metric.WithDescription(d.Description))
		errs = append(errs, err)
		return i
	}
	icounter := func(name string) metric.Int64ObservableCounter {
		d := def(name)
		i, err := meter.Int64ObservableCounter(name, metric.WithUnit(d.Unit), metric.WithDescription(d.Description))
		errs = append(errs, err)
		return i
	}
	iupdown := func(name string) metric.Int64ObservableUpDownCounter {
		d := def(name)
		i, err := meter.Int64ObservableUpDownCounter(name, metric.WithUnit(d.Unit), metric.WithDescription(d.Description))
		errs = append(errs, err)
		return i
	}

	m := &Metrics{opts: opts, commands: make(map[string]attribute.KeyValue), attrs: make(map[string]*workerAttrs)}
	var err error
	d := def(MetricRPCDuration)
	m.rpcDuration, err = meter.Float64Histogram(MetricRPCDuration, metric.WithUnit(d.Unit), metric.WithDescription(d.Description),
		metric.WithExplicitBucketBoundaries(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))
	errs = append(errs, err)
	d = def(MetricSamplerDuration)
	m.samplerDuration, err = meter.Float64Histogram(MetricSamplerDuration, metric.WithUnit(d.Unit), metric.WithDescription(d.Description),
		metric.WithExplicitBucketBoundaries(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1))
	errs = append(errs, err)

	cpuTime := fcounter(MetricCPUTime)
	cpuUtil := fgauge(MetricCPUUtilization)
	memUsage := iupdown(MetricMemoryUsage)
	memVirtual := iupdown(MetricMemoryVirtual)
	threads := iupdown(MetricThreadCount)
	fds := iupdown(MetricFDCount)
	uptime := fgauge(MetricUptime)
	idle := fgauge(MetricIdleTime)
	zombie := igauge(MetricZombie)
	procs := iupdown(MetricProcesses)
	defunct := iupdown(MetricDefunct)
	requests := icounter(MetricRequests)
	pool := iupdown(MetricWorkers)
	spawns := icounter(MetricSpawns)
	spawnFailures := icounter(MetricSpawnFailures)
	exits := icounter(MetricExits)
	sse := iupdown(MetricSSEClients)
	samplerErrors := icounter(MetricSamplerErrors)
	linesSkipped := icounter(MetricLinesSkipped)
	eventsDropped := icounter(MetricEventsDropped)
	orphans := icounter(MetricOrphansReaped)
	exportErrors := icounter(MetricExportErrors)
	extra, extraInstruments, err := opts.Gauges.register(meter)
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	userMode := attribute.String(AttrCPUMode, "user")
	systemMode := attribute.String(AttrCPUMode, "system")
	stateAttrs := map[workers.State]metric.MeasurementOption{}
	for _, s := range workers.States {
		stateAttrs[s] = metric.WithAttributes(attribute.String(AttrWorkerState, string(s)))
	}
	reasonAttrs := map[workers.ExitReason]metric.MeasurementOption{}
	for _, r := range workers.ExitReasons {
		reasonAttrs[r] = metric.WithAttributes(attribute.String(AttrExitReason, string(r)))
	}
	invalid := metric.WithAttributes(attribute.String(AttrLineReason, "invalid"))
	oversize := metric.WithAttributes(attribute.String(AttrLineReason, "oversize"))

	observables := []metric.Observable{cpuTime, cpuUtil, memUsage, memVirtual, threads, fds, uptime, idle, zombie,
		procs, defunct, requests, pool, spawns, spawnFailures, exits, sse, samplerErrors, linesSkipped,
		eventsDropped, orphans, exportErrors}
	observables = append(observables, extraInstruments...)

	// The callback may run concurrently for several readers (OTLP and
	// Prometheus): it keeps no state between calls.
	m.reg, err = meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		r := opts.Sampler.Report(ctx)
		if r != nil {
			m.attrMu.Lock()
			m.attrGen++
			n := 0
			for i := range r.Workers {
				w := &r.Workers[i]
				if n >= opts.MaxWorkerSeries {
					m.skipped.Add(uint64(len(r.Workers) - n))
					break
				}
				n++
				a := m.workerAttrsLocked(w, userMode, systemMode)
				o.ObserveFloat64(uptime, w.Uptime.Seconds(), a.all)
				o.ObserveFloat64(idle, w.Idle.Seconds(), a.all)
				o.ObserveInt64(zombie, boolInt(w.Zombie), a.all)
				o.ObserveInt64(requests, int64(w.Requests), a.all)
				if w.Err != nil {
					continue // usage unknown this pass: leave those series out
				}
				o.ObserveFloat64(cpuTime, w.CPUUser, a.user)
				o.ObserveFloat64(cpuTime, w.CPUSystem, a.system)
				if w.HasRate {
					o.ObserveFloat64(cpuUtil, w.CPUUtilUser, a.user)
					o.ObserveFloat64(cpuUtil, w.CPUUtilSystem, a.system)
				}
				o.ObserveInt64(memUsage, w.RSSBytes, a.all)
				o.ObserveInt64(memVirtual, w.VMSBytes, a.all)
				o.ObserveInt64(threads, int64(w.Threads), a.all)
				o.ObserveInt64(fds, int64(w.FDs), a.all)
				o.ObserveInt64(procs, int64(w.Processes), a.all)
				o.ObserveInt64(defunct, int64(w.Defunct), a.all)
			}
			for id, a := range m.attrs {
				if a.gen != m.attrGen {
					delete(m.attrs, id)
				}
			}
			m.attrMu.Unlock()
		}
		st := opts.Stats.Stats()
		for s, opt := range stateAttrs {
			o.ObserveInt64(pool, int64(st.ByState[s]), opt)
		}
		for reason, opt := range reasonAttrs {
			o.ObserveInt64(exits, int64(st.Exits[reason]), opt)
		}
		o.ObserveInt64(spawns, int64(st.Spawns))
		o.ObserveInt64(spawnFailures, int64(st.SpawnFailures))
		o.ObserveInt64(linesSkipped, int64(st.InvalidLines), invalid)
		o.ObserveInt64(linesSkipped, int64(st.OversizeLines), oversize)
		o.ObserveInt64(eventsDropped, int64(st.EventsDropped))
		o.ObserveInt64(orphans, int64(st.OrphansReaped))
		o.ObserveInt64(samplerErrors, int64(opts.Sampler.Errors()))
		if opts.SSEClients != nil {
			o.ObserveInt64(sse, opts.SSEClients())
		} else {
			o.ObserveInt64(sse, 0)
		}
		if opts.ExportErrors != nil {
			o.ObserveInt64(exportErrors, int64(opts.ExportErrors()))
		} else {
			o.ObserveInt64(exportErrors, 0)
		}
		extra(o)
		return nil
	}, observables...)
	if err != nil {
		return nil, err
	}
	return m, nil
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// RecordRPC records one finished command. Use it as workers.Config.OnRPC.
func (m *Metrics) RecordRPC(r workers.RPCResult) {
	m.rpcDuration.Record(context.Background(), r.Duration.Seconds(),
		metric.WithAttributes(m.commandAttr(r.Type), attribute.String(AttrOutcome, r.Outcome)))
}

// commandAttr bounds the command attribute: command types come from
// clients, so only the first maxCommandTypes distinct ones get a series.
func (m *Metrics) commandAttr(typ string) attribute.KeyValue {
	m.cmdMu.Lock()
	defer m.cmdMu.Unlock()
	if kv, ok := m.commands[typ]; ok {
		return kv
	}
	if typ == "" {
		typ = "none"
	}
	if len(m.commands) >= maxCommandTypes {
		return attribute.String(AttrCommand, "other")
	}
	kv := attribute.String(AttrCommand, typ)
	m.commands[typ] = kv
	return kv
}

// RecordSamplerPass records one sampling pass. Use it as
// SamplerOptions.OnPass (through a closure set after NewMetrics).
func (m *Metrics) RecordSamplerPass(d float64) {
	m.samplerDuration.Record(context.Background(), d)
}

// SkippedWorkers is how many worker observations the cardinality cap left
// out, cumulatively.
func (m *Metrics) SkippedWorkers() uint64 { return m.skipped.Load() }

// Close unregisters the callback.
func (m *Metrics) Close() error { return m.reg.Unregister() }
