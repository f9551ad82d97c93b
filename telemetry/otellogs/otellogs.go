package otellogs

import (
	"bytes"
	"context"
	"strings"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/log"

	"github.com/workerscope/workerscope/telemetry/attrkey"
	"github.com/workerscope/workerscope/workers"
)

// ScopeName is the instrumentation scope of the records.
const ScopeName = "github.com/workerscope/workerscope/telemetry/otellogs"

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
	r.AddAttributes(attribute.String(attrkey.WorkerID, id))
	if !l.dropKey {
		r.AddAttributes(attribute.String(attrkey.WorkerKey, key))
	}
	if pid != 0 {
		r.AddAttributes(attribute.Int(attrkey.ProcessPID, pid))
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
	r.AddAttributes(attribute.String(attrkey.IOStream, "stderr"))
	if line.Truncated {
		r.AddAttributes(attribute.Bool(attrkey.Truncated, true))
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
		r.AddAttributes(attribute.String(attrkey.ExitReason, reason), attribute.String(attrkey.ExitStatus, ev.Status))
		if ev.StderrTail != "" {
			r.AddAttributes(attribute.String(attrkey.StderrTail, ev.StderrTail))
		}
	case workers.LifecycleWorkerLimit:
		r.SetSeverity(log.SeverityWarn)
		r.SetBody(attribute.StringValue("worker hit its " + ev.Limit + " limit (" + ev.Action + ")"))
		r.AddAttributes(attribute.String(attrkey.Limit, ev.Limit))
	case workers.LifecycleBudgetExceeded:
		if ev.Budget == nil {
			return
		}
		r.SetSeverity(log.SeverityWarn)
		r.SetBody(attribute.StringValue(ev.Budget.Error() + "; its run was aborted"))
		r.AddAttributes(attribute.String(attrkey.Budget, ev.Budget.Budget), attribute.String("error.type", workers.CodeBudgetExceeded))
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
