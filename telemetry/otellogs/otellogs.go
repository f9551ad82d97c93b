package otellogs

import (
	"bytes"
	"context"
	"encoding/json"
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
func (l *Logger) Lifecycle(ev workers.Event) {
	var f struct {
		PID        int    `json:"pid"`
		Reason     string `json:"reason"`
		Status     string `json:"status"`
		StderrTail string `json:"stderr_tail"`
		Limit      string `json:"limit"`
		Action     string `json:"action"`
		Budget     string `json:"budget"`
		Error      string `json:"error"`
	}
	_ = json.Unmarshal(ev.Data, &f)
	var r log.Record
	r.SetEventName("workerscope." + ev.Type)
	l.workerAttrs(&r, ev.WorkerID, ev.Key, f.PID)
	switch ev.Type {
	case "worker_start":
		r.SetSeverity(log.SeverityInfo)
		r.SetBody(attribute.StringValue("worker started"))
	case "worker_exit":
		r.SetSeverity(log.SeverityInfo)
		if f.Reason == string(workers.ExitCrashed) || f.Reason == string(workers.ExitOOMKilled) ||
			f.Reason == string(workers.ExitMemoryLimit) || f.Reason == string(workers.ExitPidsLimit) || f.Reason == string(workers.ExitKilled) {
			r.SetSeverity(log.SeverityWarn)
		}
		r.SetBody(attribute.StringValue("worker exited (" + f.Reason + ", " + f.Status + ")"))
		r.AddAttributes(attribute.String(attrkey.ExitReason, f.Reason), attribute.String(attrkey.ExitStatus, f.Status))
		if f.StderrTail != "" {
			r.AddAttributes(attribute.String(attrkey.StderrTail, f.StderrTail))
		}
	case "worker_limit":
		r.SetSeverity(log.SeverityWarn)
		r.SetBody(attribute.StringValue("worker hit its " + f.Limit + " limit (" + f.Action + ")"))
		r.AddAttributes(attribute.String(attrkey.Limit, f.Limit))
	case "budget_exceeded":
		r.SetSeverity(log.SeverityWarn)
		r.SetBody(attribute.StringValue(f.Error + "; its run was aborted"))
		r.AddAttributes(attribute.String(attrkey.Budget, f.Budget), attribute.String("error.type", workers.CodeBudgetExceeded))
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
