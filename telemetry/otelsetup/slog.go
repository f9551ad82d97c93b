package otelsetup

import (
	"context"
	"log/slog"
	"sync/atomic"

	"go.opentelemetry.io/contrib/bridges/otelslog"
	otellog "go.opentelemetry.io/otel/log"
)

// SlogScope is the instrumentation scope of the supervisor's own log
// records exported through the slog bridge.
const SlogScope = "github.com/workerscope/workerscope"

// SlogBridge sends the supervisor's own slog records to OTLP as well
// (--log-otlp), through go.opentelemetry.io/contrib/bridges/otelslog. The
// logger exists before the LoggerProvider does: build the handler with
// Tee at start-up and Attach the provider once it exists; until then, and
// after Detach, records go to the primary handler only.
type SlogBridge struct {
	h atomic.Pointer[slog.Handler]
}

// Attach starts exporting through lp (nil: stop).
func (b *SlogBridge) Attach(lp otellog.LoggerProvider, version string) {
	if lp == nil {
		b.h.Store(nil)
		return
	}
	var h slog.Handler = otelslog.NewHandler(SlogScope, otelslog.WithLoggerProvider(lp), otelslog.WithVersion(version))
	b.h.Store(&h)
}

// Detach stops exporting (before the LoggerProvider shuts down).
func (b *SlogBridge) Detach() { b.h.Store(nil) }

// Tee returns a handler that writes every record to primary and, once b
// is attached, to OTLP too, at primary's level. Records of the OTel SDK
// itself (component=otel, see routeOTelLogs) stay local: an export error
// exported through the failing exporter would feed itself.
func (b *SlogBridge) Tee(primary slog.Handler) slog.Handler {
	return &teeHandler{primary: primary, b: b}
}

type teeHandler struct {
	primary slog.Handler
	b       *SlogBridge
	ops     []func(slog.Handler) slog.Handler // WithAttrs/WithGroup, replayed on the bridge's handler
	local   bool                              // component=otel: not exported
	cache   atomic.Pointer[[2]*slog.Handler]  // (bridge handler, it with ops applied)
}

func (t *teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return t.primary.Enabled(ctx, l)
}

func (t *teeHandler) Handle(ctx context.Context, r slog.Record) error {
	err := t.primary.Handle(ctx, r)
	if t.local {
		return err
	}
	base := t.b.h.Load()
	if base == nil {
		return err
	}
	c := t.cache.Load()
	if c == nil || c[0] != base {
		h := *base
		for _, op := range t.ops {
			h = op(h)
		}
		c = &[2]*slog.Handler{base, &h}
		t.cache.Store(c)
	}
	_ = (*c[1]).Handle(ctx, r.Clone()) // the export is best effort; stderr has the record
	return err
}

func (t *teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := t.derive(func(h slog.Handler) slog.Handler { return h.WithAttrs(as) })
	n.primary = t.primary.WithAttrs(as)
	for _, a := range as {
		if a.Key == "component" && a.Value.String() == "otel" {
			n.local = true
		}
	}
	return n
}

func (t *teeHandler) WithGroup(name string) slog.Handler {
	n := t.derive(func(h slog.Handler) slog.Handler { return h.WithGroup(name) })
	n.primary = t.primary.WithGroup(name)
	return n
}

func (t *teeHandler) derive(op func(slog.Handler) slog.Handler) *teeHandler {
	ops := make([]func(slog.Handler) slog.Handler, len(t.ops), len(t.ops)+1)
	copy(ops, t.ops)
	return &teeHandler{b: t.b, ops: append(ops, op), local: t.local}
}
