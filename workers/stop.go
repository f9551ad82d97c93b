package workers

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"
)

// terminate starts stopping w: SIGTERM to its group and tree now, SIGKILL
// after StopGrace. It returns at once; w.done closes when all is gone.
func (m *Manager) terminate(w *worker, reason ExitReason) {
	w.mu.Lock()
	if w.stopping || w.exited || w.dead {
		w.mu.Unlock()
		return
	}
	w.stopping = true
	w.stopReason = reason
	w.stopAt = time.Now()
	w.mu.Unlock()
	go func() {
		if m.cfg.StopGrace < 0 {
			m.plat.signalTree(w, sigKill) // configured without a grace
			return
		}
		m.plat.signalTree(w, sigTerm)
		if m.cfg.StopGrace > 0 {
			t := time.NewTimer(m.cfg.StopGrace)
			defer t.Stop()
			select {
			case <-w.procExited:
				return
			case <-t.C:
			}
		}
		select {
		case <-w.procExited:
			return
		default:
		}
		w.mu.Lock()
		w.escalated = true
		w.mu.Unlock()
		m.log.Warn("worker ignored SIGTERM; killing", "worker", w.id, "key", w.key, "pid", w.pid, "grace", m.cfg.StopGrace)
		m.plat.signalTree(w, sigKill)
	}()
}

// sweep makes sure no process of w's tree outlives it: survivors get
// SIGTERM, then SIGKILL once StopGrace has passed since the stop began.
func (m *Manager) sweep(w *worker) {
	w.mu.Lock()
	// The grace runs from when the stop began, so leftovers cannot stretch
	// a stop (or Close) past StopGrace. Crashed workers' leftovers and those
	// of a worker that needed SIGKILL get a short grace only.
	deadline := w.stopAt.Add(m.cfg.StopGrace)
	if w.escalated || w.stopReason == "" {
		deadline = time.Now().Add(min(m.cfg.StopGrace, time.Second))
	}
	w.mu.Unlock()
	sig := sigTerm
	hardStop := time.Now().Add(m.cfg.StopGrace + 10*time.Second)
	for round := 0; ; round++ {
		n := m.plat.signalTree(w, sig)
		m.plat.reapOrphans()
		if n == 0 {
			return
		}
		if round == 0 {
			m.log.Info("stopping leftover processes of worker", "worker", w.id, "key", w.key, "count", n)
		}
		now := time.Now()
		if now.After(hardStop) {
			m.log.Error("processes of worker survive SIGKILL", "worker", w.id, "key", w.key, "count", n)
			return
		}
		if now.After(deadline) {
			sig = sigKill
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop stops the session's worker (reason stopped) and waits until it and
// its process tree are gone, or ctx ends. ErrNotFound when no worker runs.
func (m *Manager) Stop(ctx context.Context, key string) error {
	m.mu.Lock()
	s := m.pool.sessions[key]
	var w *worker
	if s != nil {
		w = s.w
	}
	m.mu.Unlock()
	// Stop also resets the session's agent totals and budget state.
	reset := s != nil && s.usage.Reset()
	if w == nil {
		if reset {
			return nil
		}
		return fmt.Errorf("%w %q", ErrNotFound, key)
	}
	m.terminate(w, ExitStopped)
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("workers: stopping session %q: %w", key, ctx.Err())
	}
}

// Close stops every worker and waits for their process trees to be gone.
// When ctx ends first, everything left is SIGKILLed and Close waits a
// little longer before returning ctx's error. Later calls return ErrClosed.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	if m.pool.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	m.pool.closed = true
	m.mu.Unlock()
	m.wait.spawns.Wait() // spawns in flight finish and register their workers
	m.mu.Lock()
	ws := slices.Collect(maps.Keys(m.pool.live))
	sessions := slices.Collect(maps.Values(m.pool.sessions))
	m.mu.Unlock()
	m.reaper.halt()
	m.limits.watchdog.halt()
	for _, w := range ws {
		m.terminate(w, ExitStopped)
	}
	all := make(chan struct{})
	go func() { m.wait.workers.Wait(); close(all) }()
	var err error
	select {
	case <-all:
	case <-ctx.Done():
		err = fmt.Errorf("workers: close: %w", ctx.Err())
		m.log.Warn("shutdown deadline reached; killing remaining workers", "count", len(ws))
		for _, w := range ws {
			w.mu.Lock()
			w.escalated = true
			w.mu.Unlock()
			m.plat.signalTree(w, sigKill)
		}
		select {
		case <-all:
		case <-time.After(3 * time.Second):
		}
	}
	if err == nil {
		m.wait.runs.Wait() // every worker is gone, so every run has ended
	}
	for _, s := range sessions {
		s.events.CloseAll()
	}
	m.plat.close()
	m.releaseRunLock()
	return err
}
