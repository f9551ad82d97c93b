package workers

import "time"

// loop runs a pass at an interval on a goroutine of its own until halted:
// the reaper, the watchdog.
type loop struct {
	stop, done chan struct{}
}

// start runs pass every interval.
func (l *loop) start(interval time.Duration, pass func()) {
	l.stop, l.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(l.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-t.C:
			}
			pass()
		}
	}()
}

// halt stops the loop and waits for its pass in progress, if any. A loop
// never started halts at once.
func (l *loop) halt() {
	if l.stop == nil {
		return
	}
	close(l.stop)
	<-l.done
}

// reapPass is one pass of the reaper: it stops workers idle past
// IdleTTL, forgets unused sessions and reaps orphaned descendants.
func (m *Manager) reapPass() {
	m.reapOnce(m.now())
	m.plat.reapOrphans()
}

func (m *Manager) reapOnce(now time.Time) {
	ttl := m.cfg.IdleTTL
	m.mu.Lock()
	defer m.mu.Unlock()
	if ttl > 0 {
		for w := range m.pool.live {
			st, idle := w.status(now)
			if (st == StateIdle || st == StateStarting) && idle > ttl {
				m.log.Info("reaping idle worker", "worker", w.id, "key", w.key, "idle", idle.Round(time.Second))
				m.terminate(w, ExitIdleReaped)
			}
		}
	}
	keep := max(ttl, m.cfg.MaxRestartBackoff, time.Minute)
	for key, s := range m.pool.sessions {
		nsubs := s.events.Len()
		over := s.usage.Over() != nil // a session past its budget stays so until Stop resets it
		if s.w == nil && s.spawning == nil && nsubs == 0 && !over && now.Sub(s.lastUsed) > keep {
			delete(m.pool.sessions, key)
		}
	}
}
