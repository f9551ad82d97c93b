package otellogs

import (
	"bytes"
	"context"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/log"

	"github.com/workerscope/workerscope/workers"
)

// ScopeName is the instrumentation scope of the records.
const ScopeName = "github.com/workerscope/workerscope/telemetry/otellogs"

// Attribute keys and event names of the records.
const (
	AttrWorkerID   = "worker.id"
	AttrWorkerKey  = "worker.key"
	AttrProcessPID = "process.pid"
	// AttrIOStream is semconv's log.iostream ("stderr").
	AttrIOStream = "log.iostream"
	// AttrTruncated marks a line cut at workers.Config.StderrLineBytes.
	AttrTruncated = "workerscope.log.truncated"
	// AttrExitReason, AttrExitStatus and AttrStderrTail describe a
	// worker_exit; AttrLimit a worker_limit.
	AttrExitReason = "exit.reason"
	AttrExitStatus = "workerscope.exit.status"
	AttrStderrTail = "workerscope.stderr_tail"
	AttrLimit      = "limit"
	// AttrBudget names the budget of a budget_exceeded (tokens, spend).
	AttrBudget = "workerscope.budget"

	EventWorkerStart    = "workerscope.worker_start"
	EventWorkerExit     = "workerscope.worker_exit"
	EventWorkerLimit    = "workerscope.worker_limit"
	EventBudgetExceeded = "workerscope.budget_exceeded"
)

// DefaultSeverity is the severity of a stderr line that names none: many
// programs write ordinary progress to stderr, so INFO, not ERROR.
const DefaultSeverity = log.SeverityInfo

// Options configures a Logger.
type Options struct {
	// LoggerProvider makes the records. Required.
	LoggerProvider log.LoggerProvider
	// Version is the instrumentation scope's version.
	Version string
	// DropWorkerKey leaves worker.key out (--metrics-worker-key=false).
	DropWorkerKey bool
}

// Logger emits the records. Create it with New; it is safe for concurrent
// use.
type Logger struct {
	log     log.Logger
	dropKey bool
}

// New returns a Logger.
func New(opts Options) *Logger {
	return &Logger{
		log:     opts.LoggerProvider.Logger(ScopeName, log.WithInstrumentationVersion(opts.Version)),
		dropKey: opts.DropWorkerKey,
	}
}

func (l *Logger) workerAttrs(r *log.Record, id, key string, pid int) {
	r.AddAttributes(attribute.String(AttrWorkerID, id))
	if !l.dropKey {
		r.AddAttributes(attribute.String(AttrWorkerKey, key))
	}
	if pid != 0 {
		r.AddAttributes(attribute.Int(AttrProcessPID, pid))
	}
}

// Stderr emits one stderr line. ctx carries the span of the command in
// flight, if any. Use it as workers.Config.OnStderr.
func (l *Logger) Stderr(ctx context.Context, line workers.StderrLine) {
	var r log.Record
	r.SetTimestamp(line.Time)
	r.SetObservedTimestamp(line.Time)
	sev, text := ParseSeverity(line.Line)
	r.SetSeverity(sev)
	r.SetSeverityText(text)
	body := line.Line
	if !utf8.Valid(body) {
		body = bytes.ToValidUTF8(body, []byte("\uFFFD"))
	}
	r.SetBody(attribute.StringValue(string(body)))
	l.workerAttrs(&r, line.WorkerID, line.Key, line.PID)
	r.AddAttributes(attribute.String(AttrIOStream, "stderr"))
	if line.Truncated {
		r.AddAttributes(attribute.Bool(AttrTruncated, true))
	}
	l.log.Emit(ctx, r)
}

// Lifecycle emits a worker_start, worker_exit, worker_limit or
// budget_exceeded event as an event record (event.name workerscope.<type>); other events are ignored.
// Use it as workers.Config.OnLifecycle.
func (l *Logger) Lifecycle(ev workers.Lifecycle) {
	var r log.Record
	r.SetEventName("workerscope." + ev.Type)
	l.workerAttrs(&r, ev.WorkerID, ev.Key, ev.PID)
	switch ev.Type {
	case workers.LifecycleWorkerStart:
		r.SetSeverity(log.SeverityInfo)
		r.SetBody(attribute.StringValue("worker started"))
	case workers.LifecycleWorkerExit:
		r.SetSeverity(log.SeverityInfo)
		switch ev.Reason {
		case workers.ExitCrashed, workers.ExitOOMKilled, workers.ExitMemoryLimit, workers.ExitPidsLimit, workers.ExitKilled:
			r.SetSeverity(log.SeverityWarn)
		}
		reason := string(ev.Reason)
		r.SetBody(attribute.StringValue("worker exited (" + reason + ", " + ev.Status + ")"))
		r.AddAttributes(attribute.String(AttrExitReason, reason), attribute.String(AttrExitStatus, ev.Status))
		if ev.StderrTail != "" {
			r.AddAttributes(attribute.String(AttrStderrTail, ev.StderrTail))
		}
	case workers.LifecycleWorkerLimit:
		r.SetSeverity(log.SeverityWarn)
		r.SetBody(attribute.StringValue("worker hit its " + ev.Limit + " limit (" + ev.Action + ")"))
		r.AddAttributes(attribute.String(AttrLimit, ev.Limit))
	case workers.LifecycleBudgetExceeded:
		if ev.Budget == nil {
			return
		}
		r.SetSeverity(log.SeverityWarn)
		r.SetBody(attribute.StringValue(ev.Budget.Error() + "; its run was aborted"))
		r.AddAttributes(attribute.String(AttrBudget, ev.Budget.Budget), attribute.String("error.type", workers.CodeBudgetExceeded))
	default:
		return
	}
	l.log.Emit(context.Background(), r)
}

// ParseSeverity finds the severity a line states: a logfmt or JSON level
// field (level=error, "level":"warn", severity=...), or a level word at
// the start of the line or in brackets (ERROR, [WARN], W0102 glog-style is
// not parsed). It returns DefaultSeverity and "" when the line states
// none.
func ParseSeverity(line []byte) (log.Severity, string) {
	s := string(line[:min(len(line), 256)])
	low := strings.ToLower(s)
	for _, key := range []string{"level=", `"level":"`, `"level": "`, "severity=", `"severity":"`, "lvl="} {
		if i := strings.Index(low, key); i >= 0 {
			v := low[i+len(key):]
			v = strings.TrimLeft(v, `"`)
			if end := strings.IndexAny(v, "\" ,}\t"); end >= 0 {
				v = v[:end]
			}
			if sev, ok := levelWord(v); ok {
				return sev, strings.ToUpper(v)
			}
		}
	}
	// A level word as the first token, or the first bracketed token,
	// possibly after a timestamp: look at the first few tokens.
	for n, tok := range strings.Fields(s) {
		if n >= 4 {
			break
		}
		w := strings.Trim(tok, "[]():")
		if w == "" || w != strings.ToUpper(w) { // level words shout: ERROR, WARN
			continue
		}
		if sev, ok := levelWord(strings.ToLower(w)); ok {
			return sev, w
		}
	}
	return DefaultSeverity, ""
}

func levelWord(w string) (log.Severity, bool) {
	switch w {
	case "trace":
		return log.SeverityTrace, true
	case "debug", "dbug":
		return log.SeverityDebug, true
	case "info", "inf", "notice":
		return log.SeverityInfo, true
	case "warn", "warning", "wrn":
		return log.SeverityWarn, true
	case "error", "err", "eror":
		return log.SeverityError, true
	case "fatal", "panic", "critical", "crit", "emerg", "alert":
		return log.SeverityFatal, true
	}
	return 0, false
}

// Hook lets the Manager be built with OnStderr and OnLifecycle before the
// Logger exists: until Attach, nothing is emitted.
type Hook struct{ l atomic.Pointer[Logger] }

// Attach makes h forward to l.
func (h *Hook) Attach(l *Logger) { h.l.Store(l) }

// OnStderr forwards to Logger.Stderr. Use it as workers.Config.OnStderr.
func (h *Hook) OnStderr(ctx context.Context, line workers.StderrLine) {
	if l := h.l.Load(); l != nil {
		l.Stderr(ctx, line)
	}
}

// OnLifecycle forwards to Logger.Lifecycle. Use it as
// workers.Config.OnLifecycle.
func (h *Hook) OnLifecycle(ev workers.Lifecycle) {
	if l := h.l.Load(); l != nil {
		l.Lifecycle(ev)
	}
}
