package otelsetup

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/exemplar"
)

// compactExemplarViews give every instrument the SDK's default exemplar
// reservoir (the histogram's bucket-aligned one, or the fixed-size one)
// wrapped in compactReservoir. Nothing else of a stream changes: its name,
// description, unit, aggregation and attributes stay the instrument's.
//
// Why: the SDK (v1.47) collects every data point's exemplars through one
// process-wide pool of scratch slices, and its default reservoirs grow the
// slice they are handed to their full size (a histogram's: one per bucket)
// even when they hold no exemplar. That slice goes back to the pool, and
// from then on every data point collected with it, including each
// observable one that can never have an exemplar, gets a fresh, empty
// exemplar slice of that size: about 1.7 kB of garbage per data point, 17
// data points per worker per export. A compactReservoir hands back a slice
// only as long as the exemplars it holds: none until a command's span is
// sampled, then as many as one data point holds (one per histogram bucket
// a sampled command fell in), so the observable points still get a slice of
// that length each while a histogram holds exemplars.
func compactExemplarViews() []sdkmetric.View {
	kinds := []sdkmetric.InstrumentKind{
		sdkmetric.InstrumentKindCounter, sdkmetric.InstrumentKindUpDownCounter,
		sdkmetric.InstrumentKindHistogram, sdkmetric.InstrumentKindGauge,
		sdkmetric.InstrumentKindObservableCounter, sdkmetric.InstrumentKindObservableUpDownCounter,
		sdkmetric.InstrumentKindObservableGauge,
	}
	views := make([]sdkmetric.View, len(kinds))
	for i, k := range kinds {
		views[i] = sdkmetric.NewView(sdkmetric.Instrument{Kind: k}, sdkmetric.Stream{ExemplarReservoirProviderSelector: compactReservoirs})
	}
	return views
}

// compactReservoirs is the SDK's default reservoir selection, each
// reservoir wrapped in a compactReservoir.
func compactReservoirs(agg sdkmetric.Aggregation) exemplar.ReservoirProvider {
	provider := sdkmetric.DefaultExemplarReservoirProviderSelector(agg)
	return func(attrs attribute.Set) exemplar.Reservoir {
		return &compactReservoir{inner: provider(attrs)}
	}
}

// compactReservoir collects its inner reservoir's exemplars into a slice
// of its own and copies them to the caller's, so the caller's slice grows
// only to the number of exemplars held (none, most of the time). It is not
// safe for concurrent use; the SDK locks around it (it does not claim to be
// concurrent-safe).
type compactReservoir struct {
	inner   exemplar.Reservoir
	scratch []exemplar.Exemplar
}

// Offer passes the measurement to the inner reservoir.
func (r *compactReservoir) Offer(ctx context.Context, t time.Time, v exemplar.Value, a []attribute.KeyValue) {
	r.inner.Offer(ctx, t, v, a)
}

// Collect replaces dest's content with the held exemplars, growing dest
// only when it is shorter than them.
func (r *compactReservoir) Collect(dest *[]exemplar.Exemplar) {
	r.inner.Collect(&r.scratch)
	*dest = append((*dest)[:0], r.scratch...)
	clear(r.scratch) // the exemplars' attributes and ids are dest's now
	r.scratch = r.scratch[:0]
}
