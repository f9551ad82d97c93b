package workerseries

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/workerscope/workerscope/telemetry/otelmetrics"
)

// Series produces the per-worker series for the readers given its
// Producer. The readers are built before the sampler exists, so a Series
// is made first, its Producer given to each reader, and otelmetrics'
// NewMetrics binds it (MetricsOptions.WorkerSeries); until then its
// producers produce nothing.
//
// Why: the SDK keeps an attribute-set lookup and store per data point for
// an observable instrument, cleared and rebuilt at every collection, which
// was a third of the export cycle at 1,000 workers once the OTLP encoding
// was cheap; a producer hands the series over as they are measured.
type Series struct {
	scope instrumentation.Scope
	defs  []otelmetrics.MetricDef // by otelmetrics.WorkerMetric
	m     atomic.Pointer[otelmetrics.Metrics]
	// created is when it was bound: the start time of the cumulative
	// series, as the SDK's is its instruments' creation.
	created time.Time
}

// New returns a Series whose data carries scope: the scope of the meter
// the other instruments are registered on (its name and version).
func New(scope instrumentation.Scope) *Series {
	return &Series{scope: scope, defs: otelmetrics.WorkerMetrics()}
}

// Bind implements otelmetrics.WorkerSeriesProducer: NewMetrics hands it
// the Metrics that measures the series.
func (s *Series) Bind(m *otelmetrics.Metrics) error {
	s.created = time.Now()
	if !s.m.CompareAndSwap(nil, m) {
		return errors.New("workerseries: already bound to a Metrics")
	}
	return nil
}

// Producer returns the producer of the series for one reader, whose sums
// and gauges follow temporality (the reader's, as the SDK applies it to
// its instruments: their values and start times). Give each reader its
// own.
func (s *Series) Producer(temporality sdkmetric.TemporalitySelector) sdkmetric.Producer {
	if temporality == nil {
		temporality = sdkmetric.DefaultTemporalitySelector
	}
	p := &producer{series: s, temporality: make([]metricdata.Temporality, len(s.defs)), sizes: make([]int, len(s.defs))}
	for i, d := range s.defs {
		p.temporality[i] = temporality(sdkKind(d.Kind))
	}
	return p
}

// sdkKind is the SDK's instrument kind of a contract kind (the per-worker
// metrics are all observable).
func sdkKind(k otelmetrics.Kind) sdkmetric.InstrumentKind {
	switch k {
	case otelmetrics.ObservableCounter:
		return sdkmetric.InstrumentKindObservableCounter
	case otelmetrics.ObservableUpDownCounter:
		return sdkmetric.InstrumentKindObservableUpDownCounter
	}
	return sdkmetric.InstrumentKindObservableGauge
}

// producer is one reader's producer of a Series.
type producer struct {
	series      *Series
	temporality []metricdata.Temporality // by WorkerMetric

	mu sync.Mutex
	// last is the previous collection: the start of delta sums and gauges.
	last time.Time
	// reported are the values last reported per delta sum series; next is
	// the map the next collection fills, reused.
	reported, next map[deltaKey]number
	// sizes are the last collection's point counts, to size the next.
	sizes []int
}

type deltaKey struct {
	m   otelmetrics.WorkerMetric
	set attribute.Distinct
}

type number struct {
	i int64
	f float64
}

// Produce returns the series measured from the sampler's current Report,
// the one the observable instruments read in the same collection. The
// data is new memory each time: a reader keeps what it was given and
// reuses it for other data later.
func (p *producer) Produce(ctx context.Context) ([]metricdata.ScopeMetrics, error) {
	m := p.series.m.Load()
	if m == nil {
		return nil, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	defs := p.series.defs
	sink := &pointSink{f: make([][]metricdata.DataPoint[float64], len(defs)), i: make([][]metricdata.DataPoint[int64], len(defs))}
	for i, d := range defs {
		if d.Value == otelmetrics.Float64 {
			sink.f[i] = make([]metricdata.DataPoint[float64], 0, p.sizes[i])
		} else {
			sink.i[i] = make([]metricdata.DataPoint[int64], 0, p.sizes[i])
		}
	}
	if !m.MeasureWorkers(ctx, sink) {
		return nil, nil
	}

	now, created := time.Now(), p.series.created
	if p.last.IsZero() {
		p.last = created
	}
	if p.next == nil {
		p.reported, p.next = map[deltaKey]number{}, map[deltaKey]number{}
	}
	clear(p.next)
	ms := make([]metricdata.Metrics, 0, len(defs))
	for i, d := range defs {
		wm, t := otelmetrics.WorkerMetric(i), p.temporality[i]
		start := created // cumulative: since the instruments' creation
		if t == metricdata.DeltaTemporality {
			start = p.last // delta: since the previous collection
		}
		differ := t == metricdata.DeltaTemporality && d.Kind != otelmetrics.ObservableGauge
		var data metricdata.Aggregation
		var n int
		if d.Value == otelmetrics.Float64 {
			pts := sink.f[i]
			for j := range pts {
				pts[j].StartTime, pts[j].Time = start, now
				if differ {
					k := deltaKey{wm, pts[j].Attributes.Equivalent()}
					p.next[k] = number{f: pts[j].Value}
					pts[j].Value -= p.reported[k].f
				}
			}
			data, n = aggregation(d, t, pts), len(pts)
		} else {
			pts := sink.i[i]
			for j := range pts {
				pts[j].StartTime, pts[j].Time = start, now
				if differ {
					k := deltaKey{wm, pts[j].Attributes.Equivalent()}
					p.next[k] = number{i: pts[j].Value}
					pts[j].Value -= p.reported[k].i
				}
			}
			data, n = aggregation(d, t, pts), len(pts)
		}
		p.sizes[i] = n
		if n == 0 {
			continue // as the SDK leaves out an instrument without points
		}
		ms = append(ms, metricdata.Metrics{Name: d.Name, Description: d.Description, Unit: d.Unit, Data: data})
	}
	p.reported, p.next = p.next, p.reported
	p.last = now
	if len(ms) == 0 {
		return nil, nil
	}
	return []metricdata.ScopeMetrics{{Scope: p.series.scope, Metrics: ms}}, nil
}

// aggregation is d's points as the SDK aggregates its kind: a sum
// (monotonic for a counter) or a gauge.
func aggregation[N int64 | float64](d otelmetrics.MetricDef, t metricdata.Temporality, pts []metricdata.DataPoint[N]) metricdata.Aggregation {
	switch d.Kind {
	case otelmetrics.ObservableCounter:
		return metricdata.Sum[N]{Temporality: t, IsMonotonic: true, DataPoints: pts}
	case otelmetrics.ObservableUpDownCounter:
		return metricdata.Sum[N]{Temporality: t, DataPoints: pts}
	}
	return metricdata.Gauge[N]{DataPoints: pts}
}

// pointSink collects the measurements as data points, by metric.
type pointSink struct {
	f [][]metricdata.DataPoint[float64]
	i [][]metricdata.DataPoint[int64]
}

func (s *pointSink) Float64(m otelmetrics.WorkerMetric, attrs attribute.Set, v float64) {
	s.f[m] = append(s.f[m], metricdata.DataPoint[float64]{Attributes: attrs, Value: v})
}

func (s *pointSink) Int64(m otelmetrics.WorkerMetric, attrs attribute.Set, v int64) {
	s.i[m] = append(s.i[m], metricdata.DataPoint[int64]{Attributes: attrs, Value: v})
}

var _ otelmetrics.WorkerSeriesProducer = (*Series)(nil)
