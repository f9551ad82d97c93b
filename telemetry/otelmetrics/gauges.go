package otelmetrics

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sync"

	"go.opentelemetry.io/otel/metric"
)

// Gauges lets an application that embeds workers and telemetry report its
// own process-level values (the seed's server reported its watched-file
// count next to its SSE clients this way). One registration shows the value
// in the "process" object of GET /api/metrics and as an OTel observable
// gauge named "workerscope.process.<name>". Register gauges before
// NewMetrics; a nil *Gauges holds none.
type Gauges struct {
	mu     sync.Mutex
	gauges []gauge
	sealed bool
}

type gauge struct {
	name, unit, description string
	fn                      func() int64
}

var gaugeName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// ErrGaugesSealed is returned by Register after the gauges were handed to
// NewMetrics.
var ErrGaugesSealed = errors.New("otelmetrics: gauges already registered with the meter")

// Register adds a gauge. name is lower snake case (it becomes the JSON key
// and the suffix of the metric name), unit is a UCUM unit such as "{file}",
// fn must be cheap and safe for concurrent use.
func (g *Gauges) Register(name, unit, description string, fn func() int64) error {
	if !gaugeName.MatchString(name) {
		return fmt.Errorf("otelmetrics: gauge name %q must match %s", name, gaugeName)
	}
	if fn == nil {
		return errors.New("otelmetrics: gauge function is nil")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.sealed {
		return ErrGaugesSealed
	}
	if slices.ContainsFunc(g.gauges, func(x gauge) bool { return x.name == name }) {
		return fmt.Errorf("otelmetrics: gauge %q registered twice", name)
	}
	g.gauges = append(g.gauges, gauge{name, unit, description, fn})
	return nil
}

// Values reads every gauge now, by name.
func (g *Gauges) Values() map[string]int64 {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	list := slices.Clone(g.gauges)
	g.mu.Unlock()
	out := make(map[string]int64, len(list))
	for _, x := range list {
		out[x.name] = x.fn()
	}
	return out
}

// MetricName is the OTel name of the gauge called name.
func (g *Gauges) MetricName(name string) string { return "workerscope.process." + name }

// register creates the instruments and returns the observe function for
// the shared callback.
func (g *Gauges) register(meter metric.Meter) (func(metric.Observer), []metric.Observable, error) {
	if g == nil {
		return func(metric.Observer) {}, nil, nil
	}
	g.mu.Lock()
	g.sealed = true
	list := slices.Clone(g.gauges)
	g.mu.Unlock()
	insts := make([]metric.Int64ObservableGauge, len(list))
	obs := make([]metric.Observable, len(list))
	for i, x := range list {
		inst, err := meter.Int64ObservableGauge(g.MetricName(x.name), metric.WithUnit(x.unit), metric.WithDescription(x.description))
		if err != nil {
			return nil, nil, err
		}
		insts[i], obs[i] = inst, inst
	}
	return func(o metric.Observer) {
		for i, x := range list {
			o.ObserveInt64(insts[i], x.fn())
		}
	}, obs, nil
}
