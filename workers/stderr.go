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
// worker's stderr reader goroutine only. A line within one read is passed
// from the read buffer; buf holds only a line that spans reads, and is
// dropped once it is passed, so a quiet worker holds none.
type stderrLines struct {
	w      *worker
	buf    []byte
	skip   bool // dropping the rest of an over-long line
	tokens float64
	last   time.Time
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
		switch room := max - len(l.buf); {
		case l.skip:
		case len(chunk) > room:
			l.emit(l.join(chunk[:room]), true)
			l.skip = true
		case i < 0:
			l.buf = append(l.buf, chunk...) // the line goes on in the next read
		default:
			l.emit(l.join(chunk), false)
		}
		if i < 0 {
			return
		}
		l.skip = false
		b = b[i+1:]
	}
}

// join is the line so far followed by chunk: chunk itself when the line
// began in this read.
func (l *stderrLines) join(chunk []byte) []byte {
	if len(l.buf) == 0 {
		return chunk
	}
	line := append(l.buf, chunk...)
	l.buf = nil
	return line
}

// flush emits a last line that had no newline (at EOF).
func (l *stderrLines) flush() {
	if len(l.buf) > 0 && !l.skip {
		l.emit(l.join(nil), false)
	}
}

// emit passes one line (lent: OnStderr gets a copy) to OnStderr.
func (l *stderrLines) emit(line []byte, truncated bool) {
	line = bytes.TrimSuffix(line, []byte{'\r'})
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
