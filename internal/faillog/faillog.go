// Package faillog logs a repeating failure without flooding the log: the
// first failure at once, then a summary at most once per interval while it
// keeps failing, and one line when it recovers. OTLP exports and Pyroscope
// uploads, which fail every few seconds while a backend is down, both use
// it.
//
// It imports only the standard library.
package faillog

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Messages are the log lines of one kind of failure.
type Messages struct {
	First     string // the first failure (warn), with "err"
	Still     string // the summary (warn), with "failed" since the last line and "last_err"
	Recovered string // the recovery (info), with "failed" in the whole streak
}

// Log tracks one kind of failure. The zero value is not usable: use New.
type Log struct {
	log      *slog.Logger
	msgs     Messages
	attrs    []any
	interval time.Duration
	now      func() time.Time

	failures atomic.Uint64

	mu      sync.Mutex
	failing bool
	muted   bool
	pending uint64 // failures since the last line
	streak  uint64 // failures since the last success
	lastLog time.Time
	lastErr string
}

// New returns a Log that writes msgs to log with attrs on every line (e.g.
// "endpoint", url), summarizing at most once per interval (a minute when
// interval ≤ 0). now is the clock (nil: time.Now).
func New(log *slog.Logger, msgs Messages, interval time.Duration, now func() time.Time, attrs ...any) *Log {
	if interval <= 0 {
		interval = time.Minute
	}
	if now == nil {
		now = time.Now
	}
	return &Log{log: log, msgs: msgs, attrs: attrs, interval: interval, now: now}
}

// Failed records one failure.
func (l *Log) Failed(err string) {
	l.failures.Add(1)
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lastErr = err
	l.streak++
	if l.muted {
		return
	}
	if !l.failing {
		l.failing, l.pending, l.lastLog = true, 0, now
		l.log.Warn(l.msgs.First, append(l.attrs, "err", err)...)
		return
	}
	l.pending++
	if now.Sub(l.lastLog) >= l.interval {
		l.log.Warn(l.msgs.Still, append(l.attrs, "failed", l.pending, "last_err", err)...)
		l.pending, l.lastLog = 0, now
	}
}

// Succeeded records a success, logging the recovery after failures.
func (l *Log) Succeeded() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failing && !l.muted && l.msgs.Recovered != "" {
		l.log.Info(l.msgs.Recovered, append(l.attrs, "failed", l.streak)...)
	}
	l.failing, l.pending, l.streak = false, 0, 0
}

// Mute stops logging (failures are still counted): after a shutdown gave
// up on the work, its aborted attempts are not news.
func (l *Log) Mute() {
	l.mu.Lock()
	l.muted = true
	l.mu.Unlock()
}

// Failures is the number of failures so far.
func (l *Log) Failures() uint64 { return l.failures.Load() }

// Err describes a failure streak that is still going on, or is nil.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.failing {
		return nil
	}
	return fmt.Errorf("%d in a row; last: %s", l.streak, l.lastErr)
}

// Summarize logs the failures not yet reported, if still failing (at
// shutdown).
func (l *Log) Summarize() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failing && l.pending > 0 && !l.muted {
		l.log.Warn(l.msgs.Still, append(l.attrs, "failed", l.pending, "last_err", l.lastErr)...)
		l.pending = 0
	}
}
