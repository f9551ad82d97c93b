package otelsetup

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/workerscope/workerscope/internal/testutil"

	"go.opentelemetry.io/otel/attribute"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
)

// TestSlogBridge: with the bridge attached, the supervisor's records go to
// stderr and to OTLP, with the attributes and groups of derived loggers
// made before the attach, at the primary's level; the OTel SDK's own
// records (component=otel) stay local; before the attach and after the
// detach, stderr only.
func TestSlogBridge(t *testing.T) {
	var out bytes.Buffer
	var b SlogBridge
	log := slog.New(b.Tee(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo})))
	workers := log.With("component", "workers").WithGroup("w")
	otelLog := log.With("component", "otel")

	log.Info("before attach")
	exp := &testutil.LogExporter{}
	lp := sdklog.NewLoggerProvider(sdklog.WithProcessor(sdklog.NewSimpleProcessor(exp)))
	t.Cleanup(func() { _ = lp.Shutdown(context.Background()) })
	b.Attach(lp, "v1")
	workers.Warn("worker crashed", "pid", 42)
	workers.Debug("below the level")
	otelLog.Error("export failed")
	b.Detach()
	log.Info("after detach")

	for _, want := range []string{"before attach", "worker crashed", "export failed", "after detach"} {
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
