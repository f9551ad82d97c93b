package workers

import (
	"time"
)

// Runs: pi's prompt (and the demo worker's) answers as soon as the prompt is
// accepted, then streams agent_start … agent_end while the agent works. A
// command whose type is one of Config.RunCommands and that answers
// success is followed: when agent_start comes (before its response, or at
// most Config.RunStartWait after it) and no run was already streaming when
// it answered, that run is the command's, and its span and cost stay open
// until agent_end, the worker's exit, or Config.MaxRunDuration after the
// command's arrival. A prompt that answers while a run is streaming was
// queued into that run (pi's streamingBehavior) and starts none of its own.
//
// The run bookkeeping is done by the worker's stdout reader, under w.mu, in
// the order the lines arrive; the end is completed by followRun.

// responseLocked notes the response to the command written with id. The
// caller holds w.mu.
func (w *worker) responseLocked(id string, success *bool) {
	c := w.activeByIDLocked(id)
	if c == nil || !c.runType || c.phase != phaseCall {
		return
	}
	switch {
	case success != nil && !*success:
		c.phase = phaseOver // rejected: no run
	case c.sawStart && w.runOwner == nil:
		// agent_start came before the response: the run is already the
		// command's (the demo worker may print them in either order).
		c.phase = phaseRun
		w.runOwner = c
	case w.inRun:
		c.phase = phaseOver // queued into the run already streaming
	default:
		c.phase = phaseAwait
	}
}

func (w *worker) activeByIDLocked(id string) *cmdState {
	for _, c := range w.active {
		if c.id == id {
			return c
		}
	}
	return nil
}

// agentStartLocked gives a run that starts to the oldest command awaiting
// one, else marks the oldest run command still in flight as having seen
// it. The caller holds w.mu.
func (w *worker) agentStartLocked(now time.Time) {
	if w.inRun {
		return
	}
	w.inRun, w.runStart = true, now
	for _, c := range w.active {
		if c.phase == phaseAwait {
			c.phase = phaseRun
			w.runOwner = c
			return
		}
	}
	for _, c := range w.active {
		if c.runType && c.phase == phaseCall && !c.sawStart {
			c.sawStart = true
			return
		}
	}
}

// agentEnd ends the streaming run (after its agent_end event went to the
// spans).
func (w *worker) agentEnd() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.inRun = false
	for _, c := range w.active {
		c.sawStart = false // a run that ended before its command's response
	}
	if o := w.runOwner; o != nil {
		w.runOwner = nil
		o.concludeLocked(RunEndAgentEnd)
	}
}

// exitRunsLocked ends every run (and wait for one) on a worker that has
// exited. The caller holds w.mu.
func (w *worker) exitRunsLocked() {
	w.inRun = false
	w.runOwner = nil
	for _, c := range w.active {
		if c.phase == phaseRun {
			c.concludeLocked(RunEndWorkerExit)
		} else if c.phase == phaseAwait {
			c.concludeLocked("")
		}
	}
}

// concludeLocked ends c's wait for a run, or its run, by ("": no run
// followed). The caller holds the worker's mu.
func (c *cmdState) concludeLocked(by RunEnd) {
	if c.phase != phaseAwait && c.phase != phaseRun {
		return
	}
	c.phase = phaseOver
	c.endedBy = by
	close(c.runEnd)
}

// follows reports whether c is waiting for, or in, a run after Send got
// its response; if not, c will have none.
func (w *worker) follows(c *cmdState, err error) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err == nil && (c.phase == phaseAwait || c.phase == phaseRun || c.endedBy != "") {
		return true // (a run that already ended is still followed to its end)
	}
	if c.phase == phaseAwait || c.phase == phaseRun {
		c.concludeLocked("")
	}
	if w.runOwner == c {
		w.runOwner = nil
	}
	c.phase = phaseOver
	return false
}

// followRun waits for the end of c's run (or finds that none follows),
// then ends c's span with the whole run's cost and reports it to OnRun.
// res is the command's result as reported at its response.
func (m *Manager) followRun(w *worker, c *cmdState, res RPCResult, start time.Time) {
	defer m.wait.runs.Done()
	startWait := time.NewTimer(m.cfg.RunStartWait)
	defer startWait.Stop()
	bound := time.NewTimer(m.cfg.MaxRunDuration - time.Since(start))
	defer bound.Stop()
wait:
	for {
		select {
		case <-c.runEnd:
			break wait
		case <-startWait.C:
			w.mu.Lock()
			if c.phase == phaseAwait {
				c.concludeLocked("")
			}
			w.mu.Unlock()
		case <-bound.C:
			w.mu.Lock()
			by := RunEndMaxDuration
			if c.phase == phaseAwait {
				by = "" // the bound passed before any run started
			}
			if w.runOwner == c {
				w.runOwner = nil
			}
			c.concludeLocked(by)
			w.mu.Unlock()
		}
	}
	if c.endedBy == "" { // no run: the span ends as it would have at the response
		m.finishCommand(w, c)
		m.endSpan(w, c, res)
		return
	}
	w.mu.Lock()
	run := &Run{End: c.endedBy, Budget: c.budget}
	w.mu.Unlock()
	run.Cost = m.costNow(w, c)
	run.Events = m.finishCommand(w, c)
	run.Duration = time.Since(start)
	res.Run = run
	m.endSpan(w, c, res)
	if m.cfg.OnRun != nil {
		m.cfg.OnRun(res)
	}
}

// endSpan ends c's span with res and remembers the command on w.
func (m *Manager) endSpan(w *worker, c *cmdState, res RPCResult) {
	traceID := ""
	if c.span != nil {
		c.span.End(res)
		traceID = c.span.TraceID()
	}
	w.remember(res, traceID)
}
