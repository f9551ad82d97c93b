//go:build linux

package workerseries

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/workerscope/workerscope/internal/testutil"
	"github.com/workerscope/workerscope/telemetry/otelmetrics"
	"github.com/workerscope/workerscope/telemetry/sampler"
	"github.com/workerscope/workerscope/workers"
	"github.com/workerscope/workerscope/workers/workerstest"
)

// seriesView is what a collection says of one metric, points by
// attribute set, timestamps aside.
type seriesView struct {
	kind   string
	points map[string]float64
}

// perWorkerView is the per-worker metrics of rm (those a WorkerSeries
// makes), by name.
func perWorkerView(rm *metricdata.ResourceMetrics) map[string]seriesView {
	names := map[string]bool{}
	for _, d := range otelmetrics.WorkerMetrics() {
		names[d.Name] = true
	}
	out := map[string]seriesView{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if !names[m.Name] {
				continue
			}
			v := seriesView{points: map[string]float64{}}
			add := func(attrs interface{ Encoded() string }, val float64) { v.points[attrs.Encoded()] = val }
			switch d := m.Data.(type) {
			case metricdata.Sum[float64]:
				v.kind = fmt.Sprintf("sum %s monotonic=%v float64 %s %s", d.Temporality, d.IsMonotonic, m.Unit, m.Description)
				for _, p := range d.DataPoints {
					add(encoded{p.Attributes.Encoded(attribute.DefaultEncoder())}, p.Value)
				}
			case metricdata.Sum[int64]:
				v.kind = fmt.Sprintf("sum %s monotonic=%v int64 %s %s", d.Temporality, d.IsMonotonic, m.Unit, m.Description)
				for _, p := range d.DataPoints {
					add(encoded{p.Attributes.Encoded(attribute.DefaultEncoder())}, float64(p.Value))
				}
			case metricdata.Gauge[float64]:
				v.kind = fmt.Sprintf("gauge float64 %s %s", m.Unit, m.Description)
				for _, p := range d.DataPoints {
					add(encoded{p.Attributes.Encoded(attribute.DefaultEncoder())}, p.Value)
				}
			case metricdata.Gauge[int64]:
				v.kind = fmt.Sprintf("gauge int64 %s %s", m.Unit, m.Description)
				for _, p := range d.DataPoints {
					add(encoded{p.Attributes.Encoded(attribute.DefaultEncoder())}, float64(p.Value))
				}
			default:
				v.kind = fmt.Sprintf("%T", d)
			}
			out[m.Name] = v
		}
	}
	return out
}

type encoded struct{ s string }

func (e encoded) Encoded() string { return e.s }

// startTimes checks every per-worker point's timestamps: Time is now,
// StartTime is the start the SDK would give (wantStart by metric name).
func startTimes(t *testing.T, rm *metricdata.ResourceMetrics, check func(name string, start, at time.Time)) {
	t.Helper()
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[float64]:
				for _, p := range d.DataPoints {
					check(m.Name, p.StartTime, p.Time)
				}
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					check(m.Name, p.StartTime, p.Time)
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					check(m.Name, p.StartTime, p.Time)
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					check(m.Name, p.StartTime, p.Time)
				}
			}
		}
	}
}

// TestWorkerSeriesMatchesInstruments: over the same sampler Reports, the
// per-worker series a WorkerSeries produces are the ones the observable
// instruments give through the SDK — names, kinds, units, descriptions,
// temporality, every attribute set and value — for a cumulative and a
// delta reader, collection after collection, as workers come and go; and
// their start times are the SDK's (the instruments' creation for
// cumulative, the previous collection for delta).
func TestWorkerSeriesMatchesInstruments(t *testing.T) {
	m := workerstest.NewDemoManager(t, func(c *workers.Config) { c.SessionSpendBudgetUSD, c.SessionTokenBudget = 1, 1e6 })
	var clock atomic.Int64
	smp, err := sampler.New(m, sampler.Options{MinInterval: time.Hour,
		Now: func() time.Time { return time.Now().Add(time.Duration(clock.Load())) }})
	if err != nil {
		t.Fatal(err)
	}
	delta := func(sdkmetric.InstrumentKind) metricdata.Temporality { return metricdata.DeltaTemporality }
	type side struct {
		reader *sdkmetric.ManualReader
		before time.Time // before the instruments were created
	}
	build := func(temporality sdkmetric.TemporalitySelector, produced bool) side {
		var opts []sdkmetric.ManualReaderOption
		var series *Series
		if temporality != nil {
			opts = append(opts, sdkmetric.WithTemporalitySelector(temporality))
		}
		if produced {
			series = New(instrumentation.Scope{Name: "test"})
			opts = append(opts, sdkmetric.WithProducer(series.Producer(temporality)))
		}
		reader := sdkmetric.NewManualReader(opts...)
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
		t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
		before := time.Now()
		mopts := otelmetrics.MetricsOptions{Sampler: smp, Stats: m, SessionSpendBudgetUSD: 1, SessionTokenBudget: 1e6}
		if series != nil {
			mopts.WorkerSeries = series
		}
		if _, err := otelmetrics.NewMetrics(mp.Meter("test"), mopts); err != nil {
			t.Fatal(err)
		}
		return side{reader, before}
	}
	cumSDK, cumSeries := build(nil, false), build(nil, true)
	deltaSDK, deltaSeries := build(delta, false), build(delta, true)

	workerstest.MustSend(t, m, "a", `{"type":"prompt","cpu_ms":50,"mem_mib":8}`)
	workerstest.MustSend(t, m, "b", `{"type":"prompt","agent_events":true,"cpu_ms":20,"input_tokens":100,"output_tokens":10,"cost_usd":0.01}`)
	testutil.Eventually(t, 10*time.Second, "b's run to end", func() bool {
		for _, w := range m.Snapshot() {
			if w.Key == "b" {
				return w.Agent != nil && w.State == workers.StateIdle
			}
		}
		return false
	})
	var lastCollect [2]time.Time // of the delta sides
	for round := range 4 {
		switch round {
		case 1:
			workerstest.MustSend(t, m, "a", `{"type":"prompt","cpu_ms":50}`)
			workerstest.MustSend(t, m, "c", `{"type":"get_state"}`)
		case 2:
			if err := m.Stop(context.Background(), "a"); err != nil {
				t.Fatal(err)
			}
		}
		clock.Add(int64(time.Hour)) // a fresh pass, shared by the four sides
		collectAt := time.Now()
		var views [4]map[string]seriesView
		for i, s := range []side{cumSDK, cumSeries, deltaSDK, deltaSeries} {
			var rm metricdata.ResourceMetrics
			if err := s.reader.Collect(context.Background(), &rm); err != nil {
				t.Fatal(err)
			}
			views[i] = perWorkerView(&rm)
			startTimes(t, &rm, func(name string, start, at time.Time) {
				if at.Before(collectAt) {
					t.Errorf("round %d side %d: %s stamped %v, before the collection at %v", round, i, name, at, collectAt)
				}
				want := s.before // cumulative: about the instruments' creation
				if i >= 2 && !lastCollect[i-2].IsZero() {
					want = lastCollect[i-2] // delta: the previous collection
				}
				if d := start.Sub(want); d < 0 || d > 500*time.Millisecond {
					t.Errorf("round %d side %d: %s starts at %v, want about %v", round, i, name, start, want)
				}
			})
			if i >= 2 {
				lastCollect[i-2] = collectAt
			}
		}
		if len(views[0]) < 10 {
			t.Fatalf("round %d: only %d per-worker metrics collected: %v", round, len(views[0]), views[0])
		}
		for _, pair := range [][2]int{{0, 1}, {2, 3}} {
			if diff := diffLines(dump(views[pair[0]]), dump(views[pair[1]])); diff != "" {
				t.Errorf("round %d, %s: the WorkerSeries differs from the instruments (- instruments, + series):\n%s", round,
					map[int]string{0: "cumulative", 2: "delta"}[pair[0]], diff)
			}
		}
	}
}

func dump(v map[string]seriesView) string {
	var lines []string
	for name, sv := range v {
		for attrs, val := range sv.points {
			lines = append(lines, fmt.Sprintf("%s [%s] {%s} = %v", name, sv.kind, attrs, val))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// diffLines lists the lines only in a (-) or only in b (+).
func diffLines(a, b string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	ina, inb := in(a), in(b)
	var out []string
	for l := range ina {
		if !inb[l] {
			out = append(out, "- "+l)
		}
	}
	for l := range inb {
		if !ina[l] {
			out = append(out, "+ "+l)
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}
