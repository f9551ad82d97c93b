package otelsetup

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/workerscope/workerscope/internal/testutil"

	"go.opentelemetry.io/otel/attribute"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
)

// TestSlogTee: the supervisor's records go to stderr and to OTLP, with
// the attributes and groups of derived loggers, at the primary's level;
// the OTel SDK's own records (component=otel) stay local; after the
// LoggerProvider shut down, stderr only.
func TestSlogTee(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	exp := &testutil.LogExporter{}
	lp := sdklog.NewLoggerProvider(sdklog.WithProcessor(sdklog.NewSimpleProcessor(exp)))
	log := slog.New(NewSlogTee(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo}), lp, "v1"))
	workers := log.With("component", "workers").WithGroup("w")
	otelLog := log.With("component", "otel")

	workers.Warn("worker crashed", "pid", 42)
	workers.Debug("below the level")
	otelLog.Error("export failed")
	if err := lp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	log.Info("after shutdown")

	for _, want := range []string{"worker crashed", "export failed", "after shutdown"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, out.String())
		}
	}
	recs := exp.Records()
	if len(recs) != 1 {
		var bodies []string
		for _, r := range recs {
			bodies = append(bodies, r.Body().Emit())
		}
		t.Fatalf("exported %q, want only the worker's record", bodies)
	}
	r := recs[0]
	got := map[string]string{}
	r.WalkAttributes(func(kv attribute.KeyValue) bool {
		if kv.Value.Type() == attribute.MAP {
			for _, m := range kv.Value.AsMap() {
				got[string(kv.Key)+"."+string(m.Key)] = m.Value.Emit()
			}
		} else {
			got[string(kv.Key)] = kv.Value.Emit()
		}
		return true
	})
	if r.Body().Emit() != "worker crashed" || r.Severity() != otellog.SeverityWarn || got["component"] != "workers" || got["w.pid"] != "42" {
		t.Errorf("record %q severity %v attributes %v", r.Body().Emit(), r.Severity(), got)
	}
	if s := r.InstrumentationScope(); s.Name != SlogScope || s.Version != "v1" {
		t.Errorf("scope %+v", s)
	}
}

type exitReason string

type level int

type textOnly struct{}

func (textOnly) MarshalText() ([]byte, error) { return []byte("as text"), nil }

// TestSlogTeeTypedValues: values the otelslog bridge would mangle
// ("unhandled: (T) v", durations in integer nanoseconds) arrive as what
// stderr shows, in records and in attributes of derived loggers.
func TestSlogTeeTypedValues(t *testing.T) {
	t.Parallel()
	exp := &testutil.LogExporter{}
	lp := sdklog.NewLoggerProvider(sdklog.WithProcessor(sdklog.NewSimpleProcessor(exp)))
	t.Cleanup(func() { _ = lp.Shutdown(context.Background()) })
	log := slog.New(NewSlogTee(slog.NewTextHandler(io.Discard, nil), lp, "v1")).With("grace", 5*time.Second)
	log.Info("worker exited",
		"reason", exitReason("idle_reaped"),
		"tier", level(2),
		"took", 1500*time.Millisecond,
		"err", errors.New("boom"),
		"text", textOnly{},
		slog.Group("g", "d", 2*time.Minute),
		"plain", 7)
	recs := exp.Records()
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	got := map[string]attribute.Value{}
	recs[0].WalkAttributes(func(kv attribute.KeyValue) bool {
		if kv.Value.Type() == attribute.MAP {
			for _, m := range kv.Value.AsMap() {
				got[string(kv.Key)+"."+string(m.Key)] = m.Value
			}
		} else {
			got[string(kv.Key)] = kv.Value
		}
		return true
	})
	for _, tt := range []struct {
		key  string
		want attribute.Value
	}{
		{"grace", attribute.StringValue("5s")},
		{"reason", attribute.StringValue("idle_reaped")},
		{"tier", attribute.Int64Value(2)},
		{"took", attribute.StringValue("1.5s")},
		{"err", attribute.StringValue("boom")},
		{"text", attribute.StringValue("as text")},
		{"g.d", attribute.StringValue("2m0s")},
		{"plain", attribute.Int64Value(7)},
	} {
		if v, ok := got[tt.key]; !ok || v != tt.want {
			t.Errorf("%s = %v (%v), want %v", tt.key, v.Emit(), v.Type(), tt.want.Emit())
		}
	}
}
