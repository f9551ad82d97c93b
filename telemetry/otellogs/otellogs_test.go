package otellogs_test

import (
	"context"
	"testing"
	"time"

	"github.com/workerscope/workerscope/internal/testutil"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/workerscope/workerscope/telemetry/otellogs"
	"github.com/workerscope/workerscope/workers"
)

func TestParseSeverity(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		line string
		want log.Severity
		text string
	}{
		{"plain progress line", otellogs.DefaultSeverity, ""},
		{"time=2026-01-02T03:04:05Z level=error msg=boom", log.SeverityError, "ERROR"},
		{`{"level":"warn","msg":"slow"}`, log.SeverityWarn, "WARN"},
		{`{"level": "debug"}`, log.SeverityDebug, "DEBUG"},
		{"ERROR: cannot open file", log.SeverityError, "ERROR"},
		{"2026-01-02 03:04:05 [WARN] disk almost full", log.SeverityWarn, "WARN"},
		{"Traceback: an error occurred", otellogs.DefaultSeverity, ""}, // "error" in prose is not a level
		{"FATAL out of memory", log.SeverityFatal, "FATAL"},
		{"severity=info started", log.SeverityInfo, "INFO"},
		{"panic: runtime error", otellogs.DefaultSeverity, ""}, // Go panics: prose, and the exit record says it
	} {
		sev, text := otellogs.ParseSeverity([]byte(tc.line))
		if sev != tc.want || text != tc.text {
			t.Errorf("%q: %v %q, want %v %q", tc.line, sev, text, tc.want, tc.text)
		}
	}
}

func attrs(r sdklog.Record) map[string]string {
	m := map[string]string{}
	r.WalkAttributes(func(kv attribute.KeyValue) bool { m[string(kv.Key)] = kv.Value.Emit(); return true })
	return m
}

// TestStderrRecord: a line becomes a record with the worker's attributes
// and the trace of the command in flight.
func TestStderrRecord(t *testing.T) {
	t.Parallel()
	exp := &testutil.LogExporter{}
	lp := sdklog.NewLoggerProvider(sdklog.WithProcessor(sdklog.NewSimpleProcessor(exp)))
	h := otellogs.New(otellogs.Options{LoggerProvider: lp})
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("t").Start(context.Background(), "prompt")
	now := time.Now()
	h.Stderr(ctx, workers.StderrLine{WorkerID: "w1-1", Key: "alice", PID: 42, Line: []byte("level=warn slow \xff"), Time: now, Truncated: true})
	span.End()
	h.Lifecycle(workers.Lifecycle{Key: "alice", WorkerID: "w1-1", Type: workers.LifecycleWorkerExit,
		Reason: workers.ExitCrashed, Status: "exit status 2", StderrTail: "boom"})
	h.Lifecycle(workers.Lifecycle{Type: "message_update"})
	recs := exp.Records()
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2", len(recs))
	}
	r := recs[0]
	if r.TraceID() != span.SpanContext().TraceID() || r.SpanID() != span.SpanContext().SpanID() {
		t.Error("record not linked to the command's span")
	}
	if r.Severity() != log.SeverityWarn || r.Body().AsString() != "level=warn slow \uFFFD" || !r.Timestamp().Equal(now) {
		t.Errorf("record %v %q %v", r.Severity(), r.Body().AsString(), r.Timestamp())
	}
	a := attrs(r)
	if a["workerscope.worker.id"] != "w1-1" || a["workerscope.worker.key"] != "alice" || a["process.pid"] != "42" || a["log.iostream"] != "stderr" || a["workerscope.log.truncated"] != "true" {
		t.Errorf("attributes %v", a)
	}
	x := recs[1]
	if x.EventName() != "workerscope.worker_exit" || x.Severity() != log.SeverityWarn {
		t.Errorf("exit record %q %v", x.EventName(), x.Severity())
	}
	if a := attrs(x); a["workerscope.exit.reason"] != "crashed" || a["workerscope.stderr_tail"] != "boom" {
		t.Errorf("exit attributes %v", a)
	}
}
