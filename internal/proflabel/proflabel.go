// Package proflabel is the one place that names what the supervisor is
// doing in its CPU profiles: the pprof label operation=<what>, carried by
// Pyroscope's profiles and by /api/debug/pprof alike. Values must stay
// low-cardinality: an HTTP route pattern or a fixed word, never a session
// key, a worker id or a pid.
//
// It imports only the standard library, and not net/http, so every package
// may use it: the HTTP side (labelling each route with its pattern) is
// httpapi's.
package proflabel

import (
	"context"
	"runtime/pprof"
)

// Key is the pprof label key.
const Key = "operation"

// Operations labelled outside HTTP handlers.
const (
	Sample = "sample" // a sampling pass over the workers' trees
	Export = "export" // an OTLP export
	Events = "events" // routing worker output to callers and subscribers
)

// Do runs fn with operation=op (and goroutines fn starts inherit it).
func Do(ctx context.Context, op string, fn func(context.Context)) {
	pprof.Do(ctx, pprof.Labels(Key, op), fn)
}

// SetGoroutine labels the calling goroutine for the rest of its life, for
// long-running loops that have no caller context to label.
func SetGoroutine(op string) {
	pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels(Key, op)))
}
