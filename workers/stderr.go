package workers

import (
	"bytes"
	"time"
)

// StderrLine is one line a worker printed on stderr, for Config.OnStderr.
type StderrLine struct {
	WorkerID string
	Key      string
	PID      int
	// Line is the line without its newline (and a trailing \r), at most
	// Config.StderrLineBytes bytes; Truncated says it was cut.
	Line      []byte
	Truncated bool
	Time      time.Time
}

// stderrLines splits a worker's stderr into bounded lines and passes them
// through a per-worker token bucket to Config.OnStderr. It is used by the
// worker's stderr reader goroutine only.
type stderrLines struct {
	w       *worker
	buf     []byte
	skip    bool // dropping the rest of an over-long line
	tokens  float64
	last    time.Time
	scratch []byte
}

func newStderrLines(w *worker) *stderrLines {
	return &stderrLines{w: w, tokens: float64(w.m.cfg.StderrBurst)}
}

// write takes one chunk read from stderr.
func (l *stderrLines) write(b []byte) {
	max := l.w.m.cfg.StderrLineBytes
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		chunk := b
		if i >= 0 {
			chunk = b[:i]
		}
		if !l.skip {
			room := max - len(l.buf)
			if len(chunk) > room {
				l.buf = append(l.buf, chunk[:room]...)
				l.emit(true)
				l.skip = true
			} else {
				l.buf = append(l.buf, chunk...)
			}
		}
		if i < 0 {
			return
		}
		if !l.skip {
			l.emit(false)
		}
		l.skip = false
		b = b[i+1:]
	}
}

// flush emits a last line that had no newline (at EOF).
func (l *stderrLines) flush() {
	if len(l.buf) > 0 && !l.skip {
		l.emit(false)
	}
}

func (l *stderrLines) emit(truncated bool) {
	line := bytes.TrimSuffix(l.buf, []byte{'\r'})
	l.buf = l.buf[:0]
	if len(bytes.TrimSpace(line)) == 0 {
		return
	}
	now := time.Now()
	if !l.allow(now) {
		l.w.m.counts.stderrDropped.Add(1)
		return
	}
	w := l.w
	w.mu.Lock()
	ctx := w.activeContextLocked()
	w.mu.Unlock()
	w.m.cfg.OnStderr(ctx, StderrLine{
		WorkerID: w.id, Key: w.key, PID: w.pid,
		Line: bytes.Clone(line), Truncated: truncated, Time: now,
	})
}

// allow is the token bucket: StderrRate lines a second, bursts of
// StderrBurst.
func (l *stderrLines) allow(now time.Time) bool {
	cfg := &l.w.m.cfg
	if !l.last.IsZero() {
		l.tokens = min(l.tokens+now.Sub(l.last).Seconds()*cfg.StderrRate, float64(cfg.StderrBurst))
	}
	l.last = now
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}
