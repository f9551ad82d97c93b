//go:build linux

package otelmetrics

import (
	"context"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	otelruntime "go.opentelemetry.io/contrib/instrumentation/runtime"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/workerscope/workerscope/internal/testutil"
	"github.com/workerscope/workerscope/telemetry/attrkey"
	"github.com/workerscope/workerscope/telemetry/sampler"
	"github.com/workerscope/workerscope/workers"
	"github.com/workerscope/workerscope/workers/workerstest"
)

// collected maps metric name → data points' attribute sets and values.
type point struct {
	attrs attribute.Set
	value float64
	kind  Kind
	typ   ValueType
}

func collect(t *testing.T, r *sdkmetric.ManualReader) map[string][]point {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string][]point{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[float64]:
				for _, p := range d.DataPoints {
					out[m.Name] = append(out[m.Name], point{p.Attributes, p.Value, sumKind(d.IsMonotonic), Float64})
				}
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out[m.Name] = append(out[m.Name], point{p.Attributes, float64(p.Value), sumKind(d.IsMonotonic), Int64})
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					out[m.Name] = append(out[m.Name], point{p.Attributes, p.Value, ObservableGauge, Float64})
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					out[m.Name] = append(out[m.Name], point{p.Attributes, float64(p.Value), ObservableGauge, Int64})
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					out[m.Name] = append(out[m.Name], point{p.Attributes, float64(p.Count), Histogram, Float64})
				}
			case metricdata.Histogram[int64]:
				for _, p := range d.DataPoints {
					out[m.Name] = append(out[m.Name], point{p.Attributes, float64(p.Count), Histogram, Int64})
				}
			}
		}
	}
	return out
}

// burnSelf spins until this process has used d more CPU time.
func burnSelf(d time.Duration) {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	for start, x := cpu(), 0; cpu()-start < d; {
		for i := 0; i < 1e6; i++ {
			x += i
		}
	}
}

// sumKind is the contract kind of an observable sum.
func sumKind(monotonic bool) Kind {
	if monotonic {
		return ObservableCounter
	}
	return ObservableUpDownCounter
}

// local is one test pipeline: the instruments on a MeterProvider read by
// hand, a Recorder the Manager reports to, and (after observe) a sampler
// over the Manager feeding the observable instruments (the per-worker
// ones included: package workerseries checks that its producer makes the
// same series).
type local struct {
	mp       *sdkmetric.MeterProvider
	recorder *Recorder
	metrics  *Metrics
	sampler  *sampler.Sampler
	reader   *sdkmetric.ManualReader
}

// newLocal builds the pipeline's first half as cmd/workerscope does,
// before the Manager: a manual reader (plus the Go runtime producer and
// instruments) instead of an exporter, and the Recorder.
func newLocal(t *testing.T) *local {
	t.Helper()
	reader := sdkmetric.NewManualReader(sdkmetric.WithProducer(otelruntime.NewProducer()))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	if err := otelruntime.Start(otelruntime.WithMeterProvider(mp)); err != nil {
		t.Fatal(err)
	}
	rec, err := NewRecorder(mp.Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	return &local{mp: mp, recorder: rec, reader: reader}
}

// wire makes the Manager report to the Recorder, as cmd/workerscope does.
func (l *local) wire(c *workers.Config) {
	c.OnRPC, c.OnRun = l.recorder.RecordRPC, l.recorder.RecordRun
	c.OnModelCall, c.OnToolCall = l.recorder.RecordModelCall, l.recorder.RecordToolCall
}

// observe builds the second half over m: the sampler, then the
// observable instruments reading it.
func (l *local) observe(t *testing.T, m *workers.Manager, mut func(*MetricsOptions)) *local {
	t.Helper()
	ps, err := sampler.NewProcessSampler()
	if err != nil {
		t.Fatal(err)
	}
	l.sampler, err = sampler.New(m, sampler.Options{Process: ps, MinInterval: time.Millisecond, OnPass: l.recorder.RecordSamplerPass})
	if err != nil {
		t.Fatal(err)
	}
	opts := MetricsOptions{Sampler: l.sampler, Stats: m}
	if mut != nil {
		mut(&opts)
	}
	if l.metrics, err = NewMetrics(l.mp.Meter("test"), opts); err != nil {
		t.Fatal(err)
	}
	return l
}

// startLocal is the whole pipeline over m, with a Recorder m does not
// report to.
func startLocal(t *testing.T, m *workers.Manager, mut func(*MetricsOptions)) *local {
	t.Helper()
	return newLocal(t).observe(t, m, mut)
}

func TestInstrumentsFromRealWorkers(t *testing.T) {
	l := newLocal(t)
	m := workerstest.NewDemoManager(t, func(c *workers.Config) {
		l.wire(c)
		c.SessionTokenBudget, c.SessionSpendBudgetUSD = 1e6, 100
		// Limits far above what the test uses, enforced by the watchdog.
		c.MemoryMax, c.PidsMax, c.CPUMax, c.Cgroups = 4<<30, 4096, 4, workers.CgroupsOff
	})
	gauges := &Gauges{}
	if err := gauges.Register("watched_files", "{file}", "Files watched.", func() int64 { return 42 }); err != nil {
		t.Fatal(err)
	}
	reader := l.observe(t, m, func(o *MetricsOptions) {
		o.Gauges = gauges
		o.SSEClients = func() int64 { return 3 }
		o.Limits = m.Limits
		o.SessionTokenBudget, o.SessionSpendBudgetUSD = 1e6, 100
	}).reader
	workerstest.MustSend(t, m, "alpha", `{"type":"prompt","cpu_ms":100,"mem_mib":16,"events":1}`)
	workerstest.MustSend(t, m, "gamma", `{"type":"prompt","agent_events":true,"cpu_ms":50}`) // GenAI metrics
	testutil.Eventually(t, 10*time.Second, "gamma's run to end", func() bool {
		w, ok := workerByKey(m, "gamma")
		return ok && w.Agent != nil && w.Agent.ModelCalls == 2 && w.State == workers.StateIdle
	})
	workerstest.MustSend(t, m, "beta", `{"type":"get_state"}`)
	workerstest.MustSend(t, m, "beta", `{"type":"no_such_command"}`) // the demo worker answers success:false
	time.Sleep(300 * time.Millisecond)
	burnSelf(200 * time.Millisecond) // so the supervisor's own CPU time is well above one clock tick

	got := collect(t, reader)
	ws := m.Snapshot()
	for _, def := range Contract() {
		pts := got[def.Name]
		if len(pts) == 0 {
			t.Errorf("%s: no data points", def.Name)
			continue
		}
		for _, p := range pts {
			kind := p.kind
			if def.Kind == Counter && kind == ObservableCounter { // a monotonic sum either way
				kind = Counter
			}
			if kind != def.Kind || p.typ != def.Value {
				t.Errorf("%s: collected as %s of %s, contract says %s of %s", def.Name, p.kind, p.typ, def.Kind, def.Value)
				break
			}
		}
		if !slices.Contains(def.Attributes, attrkey.WorkerID) {
			continue
		}
		for _, w := range ws {
			if strings.HasPrefix(def.Name, "workerscope.session.") && w.Agent == nil {
				continue // a session's totals: only for sessions with agent runs
			}
			found := 0
			for _, p := range pts {
				id, _ := p.attrs.Value(attrkey.WorkerID)
				if id.AsString() != w.ID {
					continue
				}
				found++
				key, _ := p.attrs.Value(attrkey.WorkerKey)
				pid, _ := p.attrs.Value(attrkey.ProcessPID)
				if key.AsString() != w.Key || int(pid.AsInt64()) != w.PID {
					t.Errorf("%s: attributes %v for worker %+v", def.Name, p.attrs.ToSlice(), w)
				}
			}
			want := 1
			if slices.Contains(def.Attributes, attrkey.CPUMode) || slices.Contains(def.Attributes, attrkey.FaultType) ||
				slices.Contains(def.Attributes, attrkey.GenAITokenType) || def.Name == MetricSessionBudgetUsage {
				want = 2
			}
			if found != want {
				t.Errorf("%s: %d points for worker %s, want %d", def.Name, found, w.Key, want)
			}
		}
	}
	if p := got["workerscope.process.watched_files"]; len(p) != 1 || p[0].value != 42 {
		t.Errorf("extra gauge: %v", p)
	}
	if p := got[MetricSSEClients]; len(p) != 1 || p[0].value != 3 {
		t.Errorf("sse clients: %v", p)
	}
	if p := got[MetricRPCDuration]; len(p) < 2 {
		t.Errorf("rpc duration points: %v", p)
	}
	for _, name := range []string{"go.memory.used", "go.goroutine.count", "go.schedule.duration"} {
		if len(got[name]) == 0 {
			t.Errorf("no Go runtime metric %s; got %d metrics", name, len(got))
		}
	}
	var workerErrors int
	for _, p := range got[MetricRPCDuration] {
		if e, ok := p.attrs.Value(attrkey.ErrorType); ok && e.AsString() == workers.CodeWorkerError {
			workerErrors += int(p.value)
		}
		if _, ok := p.attrs.Value(attrkey.RPCMethod); !ok {
			t.Errorf("rpc duration point without rpc.method: %v", p.attrs.ToSlice())
		}
	}
	if workerErrors != 1 {
		t.Errorf("rpc.duration with error.type=worker_error: %d, want 1", workerErrors)
	}
	if p := got[MetricProcessCPUTime]; len(p) != 2 || p[0].value+p[1].value < 0.1 {
		t.Errorf("supervisor CPU time: %v", p)
	}
	for name, want := range map[string]string{MetricWorkerMemoryLimit: "watchdog", MetricWorkerProcessesLimit: "watchdog", MetricWorkerCPULimit: "none"} {
		if p := got[name]; len(p) != 1 || p[0].attrs.Len() != 1 {
			t.Errorf("%s: %v", name, p)
		} else if e, _ := p[0].attrs.Value(attrkey.Enforcement); e.AsString() != want {
			t.Errorf("%s enforced by %q, want %q", name, e.AsString(), want)
		}
	}
	if p := got[MetricProcessMemoryUsage]; len(p) != 1 || p[0].value < 1<<20 {
		t.Errorf("supervisor RSS: %v", p)
	}
	// Memory held by alpha shows.
	for _, p := range got[MetricWorkerMemoryUsage] {
		if k, _ := p.attrs.Value(attrkey.WorkerKey); k.AsString() == "alpha" && p.value < 16<<20 {
			t.Errorf("alpha RSS %v < 16 MiB held", p.value)
		}
	}

	// A stopped worker's series end.
	var betaID string
	for _, w := range ws {
		if w.Key == "beta" {
			betaID = w.ID
		}
	}
	if err := m.Stop(context.Background(), "beta"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	got = collect(t, reader)
	for name, pts := range got {
		for _, p := range pts {
			if id, ok := p.attrs.Value(attrkey.WorkerID); ok && id.AsString() == betaID {
				t.Errorf("%s still reports stopped worker %s", name, betaID)
			}
		}
	}
	exits := 0.0
	for _, p := range got[MetricExits] {
		if r, _ := p.attrs.Value(attrkey.ExitReason); r.AsString() == "stopped" {
			exits = p.value
		}
	}
	if exits != 1 {
		t.Errorf("stopped exits = %v", exits)
	}
}

func TestDropWorkerKeyAndSeriesCap(t *testing.T) {
	m := workerstest.NewDemoManager(t)
	reader := startLocal(t, m, func(o *MetricsOptions) { o.DropWorkerKey = true; o.MaxWorkerSeries = 1 }).reader
	workerstest.MustSend(t, m, "a", `{"type":"get_state"}`)
	workerstest.MustSend(t, m, "b", `{"type":"get_state"}`)
	got := collect(t, reader)
	if n := len(got[MetricWorkerMemoryUsage]); n != 1 {
		t.Fatalf("series cap 1: %d points", n)
	}
	if p := got[MetricWorkersUnobserved]; len(p) != 1 || p[0].value != 1 {
		t.Fatalf("unobserved workers: %v, want 1", p)
	}
	for _, p := range got[MetricWorkerMemoryUsage] {
		if _, ok := p.attrs.Value(attrkey.WorkerKey); ok {
			t.Fatal("workerscope.worker.key present although dropped")
		}
	}
}

func TestGaugesRegistry(t *testing.T) {
	g := &Gauges{}
	for _, bad := range []string{"", "Bad", "1x", "with-dash"} {
		if err := g.Register(bad, "1", "", func() int64 { return 0 }); err == nil {
			t.Errorf("name %q accepted", bad)
		}
	}
	if err := g.Register("ok", "1", "", func() int64 { return 7 }); err != nil {
		t.Fatal(err)
	}
	if err := g.Register("ok", "1", "", func() int64 { return 7 }); err == nil {
		t.Error("duplicate accepted")
	}
	if v := g.Values(); v["ok"] != 7 {
		t.Errorf("values %v", v)
	}
	var nilG *Gauges
	if nilG.Values() != nil {
		t.Error("nil gauges have values")
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func workerByKey(m *workers.Manager, key string) (workers.WorkerSnapshot, bool) {
	for _, w := range m.Snapshot() {
		if w.Key == key {
			return w, true
		}
	}
	return workers.WorkerSnapshot{}, false
}
