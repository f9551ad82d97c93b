package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Format strings pyroscope-go v1.5.0 logs upload trouble with (see
// upstream/remote/remote.go).
const (
	pyroscopeUploadFailed = "upload profile: %v"
	pyroscopeQueueFull    = "remote upload queue is full, dropping a profile job"
)

// pyroscopeLogger adapts slog to pyroscope-go's Logger. Its debug lines
// (one per upload and per window) go to slog's debug level, and so do its
// info lines (a multi-line dump of the configuration at start, which
// StartProfiling replaces with one structured line). Upload failures and
// queue drops go to uploadLog; other errors are logged once, then
// summarized at most once a minute.
type pyroscopeLogger struct {
	log     *slog.Logger
	uploads *uploadLog
	now     func() time.Time

	mu     sync.Mutex
	repeat map[string]*repeated // by format string (a small, fixed set)
}

type repeated struct {
	last    time.Time
	pending uint64
}

func (l *pyroscopeLogger) Debugf(format string, args ...any) { l.debug(format, args) }
func (l *pyroscopeLogger) Infof(format string, args ...any)  { l.debug(format, args) }

func (l *pyroscopeLogger) debug(format string, args []any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug("pyroscope: " + fmt.Sprintf(format, args...))
	}
}

func (l *pyroscopeLogger) Errorf(format string, args ...any) {
	switch format {
	case pyroscopeUploadFailed:
		l.uploads.failed(fmt.Sprintf("%v", args...))
		return
	case pyroscopeQueueFull:
		l.uploads.failed("upload queue full (server slow or unreachable): profile dropped")
		return
	}
	msg := fmt.Sprintf(format, args...)
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.repeat == nil {
		l.repeat = map[string]*repeated{}
	}
	r := l.repeat[format]
	switch {
	case r == nil:
		l.repeat[format] = &repeated{last: now}
		l.log.Error("pyroscope: " + msg)
	case now.Sub(r.last) >= uploadErrorSummaryInterval:
		l.log.Error("pyroscope: "+msg, "repeated", r.pending+1)
		r.last, r.pending = now, 0
	default:
		r.pending++
	}
}

// uploadLog counts failed uploads and logs them rate-limited: the first
// failure at warn, then a summary at most once a minute, and a line when
// uploads recover.
type uploadLog struct {
	log    *slog.Logger
	server string
	now    func() time.Time

	failures atomic.Uint64

	mu      sync.Mutex
	failing bool
	muted   bool   // after Stop gave up: aborted uploads are not news
	pending uint64 // failures since the last line
	streak  uint64 // failures since uploads last worked
	lastLog time.Time
	lastErr string
}

func (u *uploadLog) failed(err string) {
	u.failures.Add(1)
	now := u.now()
	u.mu.Lock()
	defer u.mu.Unlock()
	u.lastErr = err
	u.streak++
	if u.muted {
		return
	}
	if !u.failing {
		u.failing, u.pending, u.lastLog = true, 0, now
		u.log.Warn("Pyroscope upload failed; profiling continues, further failures are summarized once a minute",
			"server", u.server, "err", err)
		return
	}
	u.pending++
	if now.Sub(u.lastLog) >= uploadErrorSummaryInterval {
		u.log.Warn("Pyroscope uploads still failing", "server", u.server, "failed_uploads", u.pending, "last_err", err)
		u.pending, u.lastLog = 0, now
	}
}

func (u *uploadLog) succeeded() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.failing && !u.muted {
		u.log.Info("Pyroscope uploads recovered", "server", u.server, "failed_uploads", u.streak)
	}
	u.failing, u.pending, u.streak = false, 0, 0
}

func (u *uploadLog) mute() {
	u.mu.Lock()
	u.muted = true
	u.mu.Unlock()
}

// finalErr describes failing uploads at shutdown, or is nil.
func (u *uploadLog) finalErr() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.failing {
		return nil
	}
	return fmt.Errorf("telemetry: Pyroscope uploads to %s were failing at shutdown (%d in a row; last: %s)", u.server, u.streak, u.lastErr)
}
