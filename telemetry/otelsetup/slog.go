package otelsetup

import (
	"context"
	"encoding"
	"fmt"
	"log/slog"
	"reflect"

	"go.opentelemetry.io/contrib/bridges/otelslog"
	otellog "go.opentelemetry.io/otel/log"
)

// SlogScope is the instrumentation scope of the supervisor's own log
// records exported through the slog bridge.
const SlogScope = "github.com/workerscope/workerscope"

// NewSlogTee returns a handler that writes every record to primary and
// sends it to lp as an OTLP log record too (--log-otlp), through
// go.opentelemetry.io/contrib/bridges/otelslog, at primary's level. Build
// it once the LoggerProvider exists and derive the component loggers from
// it; records of loggers derived earlier (the provider's own) stay local.
// Records of the OTel SDK itself (component=otel, see routeOTelLogs) stay
// local too: an export error exported through the failing exporter would
// feed itself. After lp shuts down, records go to primary only.
func NewSlogTee(primary slog.Handler, lp otellog.LoggerProvider, version string) slog.Handler {
	return &teeHandler{primary: primary,
		bridge: typedValues{otelslog.NewHandler(SlogScope, otelslog.WithLoggerProvider(lp), otelslog.WithVersion(version))}}
}

type teeHandler struct {
	primary, bridge slog.Handler
	local           bool // component=otel: not exported
}

func (t *teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return t.primary.Enabled(ctx, l)
}

func (t *teeHandler) Handle(ctx context.Context, r slog.Record) error {
	err := t.primary.Handle(ctx, r)
	if !t.local {
		_ = t.bridge.Handle(ctx, r.Clone()) // the export is best effort; stderr has the record
	}
	return err
}

func (t *teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := &teeHandler{primary: t.primary.WithAttrs(as), bridge: t.bridge.WithAttrs(as), local: t.local}
	for _, a := range as {
		if a.Key == "component" && a.Value.String() == "otel" {
			n.local = true
		}
	}
	return n
}

func (t *teeHandler) WithGroup(name string) slog.Handler {
	return &teeHandler{primary: t.primary.WithGroup(name), bridge: t.bridge.WithGroup(name), local: t.local}
}

// typedValues gives the bridge values it maps faithfully: the otelslog
// bridge turns a slog.KindAny value it does not know (a named string type
// such as workers.ExitReason) into "unhandled: (T) v", and a duration into
// integer nanoseconds. Here a duration becomes its text ("1.5s", as on
// stderr), an error its message, and a fmt.Stringer or
// encoding.TextMarshaler its text; groups are walked.
type typedValues struct{ slog.Handler }

func (h typedValues) Handle(ctx context.Context, r slog.Record) error {
	n := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		n.AddAttrs(typedAttr(a))
		return true
	})
	return h.Handler.Handle(ctx, n)
}

func (h typedValues) WithAttrs(as []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = typedAttr(a)
	}
	return typedValues{h.Handler.WithAttrs(out)}
}

func (h typedValues) WithGroup(name string) slog.Handler {
	return typedValues{h.Handler.WithGroup(name)}
}

func typedAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindDuration:
		return slog.String(a.Key, v.Duration().String())
	case slog.KindGroup:
		g := v.Group()
		out := make([]slog.Attr, len(g))
		for i, x := range g {
			out[i] = typedAttr(x)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return slog.String(a.Key, x.Error())
		case fmt.Stringer:
			return slog.String(a.Key, x.String())
		case encoding.TextMarshaler:
			if b, err := x.MarshalText(); err == nil {
				return slog.String(a.Key, string(b))
			}
		}
		if rv := reflect.ValueOf(v.Any()); rv.IsValid() {
			switch rv.Kind() { // named scalar types: ExitReason, CgroupMode ...
			case reflect.String:
				return slog.String(a.Key, rv.String())
			case reflect.Bool:
				return slog.Bool(a.Key, rv.Bool())
			case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
				return slog.Int64(a.Key, rv.Int())
			case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
				return slog.Uint64(a.Key, rv.Uint())
			case reflect.Float32, reflect.Float64:
				return slog.Float64(a.Key, rv.Float())
			}
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
