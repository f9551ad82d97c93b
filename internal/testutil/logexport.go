package testutil

import (
	"context"
	"slices"
	"sync"

	sdklog "go.opentelemetry.io/otel/sdk/log"
)

// LogExporter is an OTel log SDK exporter that keeps every record in
// memory, for tests of what a LoggerProvider emits.
type LogExporter struct {
	mu   sync.Mutex
	recs []sdklog.Record
}

// Export keeps copies of rs.
func (e *LogExporter) Export(_ context.Context, rs []sdklog.Record) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range rs {
		e.recs = append(e.recs, r.Clone())
	}
	return nil
}

// Shutdown does nothing.
func (e *LogExporter) Shutdown(context.Context) error { return nil }

// ForceFlush does nothing.
func (e *LogExporter) ForceFlush(context.Context) error { return nil }

// Records returns the records exported so far.
func (e *LogExporter) Records() []sdklog.Record {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.recs)
}
