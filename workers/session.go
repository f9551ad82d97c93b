package workers

import (
	"context"
	"fmt"
	"time"

	"github.com/workerscope/workerscope/workers/internal/agentev"
	"github.com/workerscope/workerscope/workers/internal/fanout"
)

// session is the state kept per key across worker restarts.
type session struct {
	key       string
	w         *worker       // guarded by Manager.mu
	spawning  chan struct{} // non-nil while a spawn is in progress
	crashes   int           // consecutive crashes
	crashed   bool          // the last worker crashed
	restarts  int
	nextSpawn time.Time
	lastExit  error
	lastUsed  time.Time

	events *fanout.Topic[Event] // its subscriptions; locked after Manager.mu

	// usage is the session's model-call totals and budget state
	// (agent.go); its lock is a leaf.
	usage agentev.Account
}

// acquire returns the session's live worker, spawning one if needed.
func (m *Manager) acquire(ctx context.Context, key string) (*worker, error) {
	for {
		m.mu.Lock()
		if m.pool.closed {
			m.mu.Unlock()
			return nil, ErrClosed
		}
		s := m.sessionLocked(key)
		s.lastUsed = m.now()
		if w := s.w; w != nil {
			w.mu.Lock()
			ok := !w.stopping && !w.exited && !w.dead
			if ok {
				w.reserveLocked() // before the reaper or an eviction can pick it
			}
			w.mu.Unlock()
			if ok {
				m.mu.Unlock()
				return w, nil
			}
		}
		if ch := s.spawning; ch != nil {
			m.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, fmt.Errorf("workers: waiting for session %q to spawn: %w", key, ctx.Err())
			}
		}
		if wait := s.nextSpawn.Sub(m.now()); wait > 0 {
			last := s.lastExit
			m.mu.Unlock()
			if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
				return nil, &BackoffError{Key: key, RetryAfter: wait, Last: last}
			}
			t := time.NewTimer(wait)
			select {
			case <-t.C:
				continue
			case <-ctx.Done():
				t.Stop()
				return nil, fmt.Errorf("workers: session %q backing off: %w", key, ctx.Err())
			}
		}
		if err := m.makeRoomLocked(); err != nil {
			m.mu.Unlock()
			return nil, err
		}
		done := make(chan struct{})
		s.spawning = done
		m.pool.spawning++ // counts against MaxWorkers until registered
		m.wait.spawns.Add(1)
		m.mu.Unlock()

		w, err := m.spawn(s)

		m.mu.Lock()
		s.spawning = nil
		m.pool.spawning--
		close(done)
		defer m.wait.spawns.Done()
		if err != nil {
			m.counts.spawnFailures.Add(1)
			s.crashes++
			s.nextSpawn = m.now().Add(m.backoff(s.crashes))
			s.lastExit = err
			m.mu.Unlock()
			return nil, err
		}
		// Registered before its goroutines start, so an immediate exit finds
		// it in the pool; reserved for this caller.
		s.w = w
		m.pool.live[w] = struct{}{}
		m.pool.byID[w.id] = w
		w.mu.Lock()
		w.reserveLocked()
		w.mu.Unlock()
		m.mu.Unlock()
		m.counts.spawns.Add(1)
		l := w.lifecycle(LifecycleWorkerStart)
		l.PID = w.pid
		m.publishLifecycle(s, l)
		w.start()
		return w, nil
	}
}

func (m *Manager) sessionLocked(key string) *session {
	s := m.pool.sessions[key]
	if s == nil {
		s = &session{key: key, events: fanout.NewTopic(m.events), lastUsed: m.now()}
		m.pool.sessions[key] = s
	}
	return s
}

// makeRoomLocked enforces MaxWorkers: it evicts the longest-idle idle
// worker, or fails with ErrPoolFull when every worker is busy.
func (m *Manager) makeRoomLocked() error {
	now := m.now()
	active := 0
	var victim *worker
	var victimIdle time.Duration
	for w := range m.pool.live {
		st, idle := w.status(now)
		if st == StateStopping || st == StateExited {
			continue
		}
		active++
		if st == StateIdle && (victim == nil || idle > victimIdle) {
			victim, victimIdle = w, idle
		}
	}
	active += m.pool.spawning
	if active < m.cfg.MaxWorkers {
		return nil
	}
	if victim == nil {
		return fmt.Errorf("%w (%d of %d workers running or starting)", ErrPoolFull, active, m.cfg.MaxWorkers)
	}
	m.log.Info("pool full; evicting longest-idle worker", "worker", victim.id, "key", victim.key, "idle", victimIdle.Round(time.Millisecond))
	m.terminate(victim, ExitLimit)
	return nil
}

func (m *Manager) backoff(crashes int) time.Duration {
	if crashes <= 1 {
		return 0
	}
	d := m.cfg.RestartBackoff
	for i := 2; i < crashes && d < m.cfg.MaxRestartBackoff; i++ {
		d *= 2
	}
	return min(d, m.cfg.MaxRestartBackoff)
}

// onExit hands the session back so the next command respawns, and records
// crash back-off.
func (m *Manager) onExit(w *worker, xe *ExitError) {
	m.counts.exits[exitReasonIndex[xe.Reason]].Add(1)
	m.mu.Lock()
	delete(m.pool.live, w)
	delete(m.pool.byID, w.id)
	s := w.s
	if s.w == w {
		s.w = nil
	}
	if xe.Reason == ExitCrashed || xe.Limit != nil { // limit exits back off like crashes
		s.crashed = true
		if m.now().Sub(w.startedAt) > time.Minute {
			s.crashes = 0 // a long healthy run: start counting again
		}
		s.crashes++
		s.nextSpawn = m.now().Add(m.backoff(s.crashes))
		s.lastExit = xe
	} else {
		s.crashes = 0
	}
	s.lastUsed = m.now()
	m.mu.Unlock()
	l := w.lifecycle(LifecycleWorkerExit)
	l.Reason, l.Status, l.StderrTail = xe.Reason, xe.Status, xe.StderrTail
	m.publishLifecycle(s, l)
}

// describeByte shows a printable ASCII byte quoted ('/') and any other as
// hex (0x00, 0xC3): a byte of a multi-byte character printed as a
// character of its own would name one the client never sent.
func describeByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return fmt.Sprintf("%q", c)
	}
	return fmt.Sprintf("0x%02X", c)
}

// maxKeyLen is the longest session key accepted.
const maxKeyLen = 128

// ErrBadKey reports a session key outside the accepted alphabet or length.
var ErrBadKey = fmt.Errorf("workers: session key must be 1–%d characters of [A-Za-z0-9._-]", maxKeyLen)

// ValidateKey checks a session key: 1–128 characters of [A-Za-z0-9._-].
func ValidateKey(key string) error {
	if len(key) == 0 || len(key) > maxKeyLen {
		return fmt.Errorf("%w (got %d characters)", ErrBadKey, len(key))
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w (byte %d is %s)", ErrBadKey, i, describeByte(c))
		}
	}
	if key == "." || key == ".." {
		return fmt.Errorf("%w (%q is reserved)", ErrBadKey, key)
	}
	return nil
}
