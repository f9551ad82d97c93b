package workers

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/workerscope/workerscope/internal/proflabel"
	"github.com/workerscope/workerscope/workers/internal/agentev"
	"github.com/workerscope/workerscope/workers/internal/wire"
)

// worker is one spawned process. Its mutex guards only in-memory state and
// is never held across I/O, so Snapshot never waits on a busy worker.
type worker struct {
	m         *Manager
	s         *session
	id        string
	key       string
	cmd       *exec.Cmd
	pid       int
	startedAt time.Time
	// startTicks is the process start time from /proc (0 if unknown).
	startTicks uint64
	restarts   int
	// members are the (pid, start time) pairs of every process seen in the
	// worker's tree while stopping it, so one that can no longer be
	// attributed (exiting, its environment already gone) is still waited
	// for. Guarded by the platform's lock.
	members map[[2]uint64]struct{}

	stdin   *os.File
	stdout  *os.File
	stderrR *os.File
	wsem    chan struct{} // one writer at a time, acquired under a context

	procExited chan struct{} // closed when the process has been waited for
	readDone   chan struct{} // closed when stdout hits EOF
	errDone    chan struct{} // closed when stderr hits EOF
	done       chan struct{} // closed when the worker and its tree are gone

	mu         sync.Mutex // taken after Manager.mu when both are held
	answered   bool       // printed anything: no longer "starting"
	inflight   int
	requests   uint64
	lastActive time.Time
	lastEvent  time.Time // zero after agent_end
	stopping   bool
	stopReason ExitReason
	stopAt     time.Time // when the stop began (the grace runs from here)
	escalated  bool
	dead       bool // the process has been waited for (exit being processed)
	exited     bool
	exitErr    *ExitError
	pending    map[string]chan reply
	stderr     *wire.TailBuffer
	// active are the commands in flight (for their events, stderr and
	// cost), oldest first; last the last finished ones.
	active []*cmdState
	last   []CommandSummary
	// inRun: agent_start arrived and agent_end has not yet; runOwner is
	// the command whose run it is (nil: none, e.g. a run the worker
	// started on its own). See runs.go.
	inRun    bool
	runStart time.Time // when the streaming run's agent_start came
	runOwner *cmdState
	// spanBuf is the stdout reader's scratch for streamEvent.
	spanBuf []CommandSpan

	// cg is the worker's cgroup (nil without one); set before start.
	cg *workerCgroup
	// iso is the worker's uid, directory and sandbox; set before start.
	iso *workerIso
	// limitErr is the limit the watchdog stopped the worker for.
	limitErr *LimitError
	// over counts consecutive watchdog passes over the memory and pids
	// limits; counters are the cgroup event counts last seen and hits the
	// worker's limit events by limit. Used by the limit loop only, except
	// hits (read by snapshot).
	over     [2]int
	counters limitCounters
	hits     [numLimits]uint64

	// agentMu guards agent: the open model call and tool calls of the
	// agent run streaming on the worker (agent.go). A leaf lock.
	agentMu sync.Mutex
	agent   agentState
}

type reply struct {
	line []byte
	err  error
}

func (w *worker) stateLocked(now time.Time) State {
	switch {
	case w.exited || w.dead:
		return StateExited
	case w.stopping:
		return StateStopping
	case w.inflight > 0:
		// Before "starting": a first command that runs long without output
		// must not look idle to the reaper.
		return StateRunning
	case !w.answered:
		return StateStarting
	case !w.lastEvent.IsZero() && now.Sub(w.lastEvent) < w.m.cfg.RunningWindow:
		return StateRunning
	case w.inRun && now.Sub(w.runStart) < w.runBound():
		// Between agent_start and agent_end the agent is at work even
		// when it streams nothing for a while (a model call, a quiet tool
		// call): it must not be reaped as idle mid-run. A run older than
		// the bound counts as stuck, idle again, so the reaper and the
		// zombie flag can see it.
		return StateRunning
	}
	return StateIdle
}

// runBound is how long a streaming run keeps its worker running:
// MaxRunDuration, or its default when runs are not followed.
func (w *worker) runBound() time.Duration {
	if d := w.m.cfg.MaxRunDuration; d > 0 {
		return d
	}
	return defaultMaxRunDuration
}

// status returns the worker's state and idle time at now.
func (w *worker) status(now time.Time) (State, time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stateLocked(now), now.Sub(w.lastActive)
}

func (w *worker) snapshot(now time.Time) WorkerSnapshot {
	agent := w.agentSnapshot()
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.stateLocked(now)
	idle := max(now.Sub(w.lastActive), 0)
	ttl := w.m.cfg.IdleTTL
	return WorkerSnapshot{
		ID:         w.id,
		Key:        w.key,
		PID:        w.pid,
		State:      st,
		StartedAt:  w.startedAt,
		LastActive: w.lastActive,
		Idle:       idle,
		Requests:   w.requests,
		Restarts:   w.restarts,
		Zombie:     ttl > 0 && st != StateRunning && st != StateExited && idle > ttl,
		StartTicks: w.startTicks,
		MemoryMax:  w.m.cfg.MemoryMax,
		PidsMax:    w.m.cfg.PidsMax,
		CPUMax:     w.m.cfg.CPUMax,
		Cgroup:     w.m.plat.cgroupPath(w.cg),
		LimitHits:  w.hitsLocked(),
		UID:        max(w.iso.uid, 0),
		Sandboxed:  w.iso.sandboxed,

		LastCommands: slices.Clone(w.last),
		Agent:        agent,
	}
}

// reserveLocked counts a caller as in flight before it has written
// anything, so the reaper and eviction leave the worker alone between
// acquire and call. The caller must hold w.mu and then call w.call, which
// releases the reservation.
func (w *worker) reserveLocked() {
	w.inflight++
	w.lastActive = w.m.now()
}

// call sends one command object and waits for its response. The caller
// holds a reservation (reserveLocked), which call releases.
// c, if not nil, is the command's state (its wire id is recorded in it).
func (w *worker) call(ctx context.Context, obj map[string]json.RawMessage, c *cmdState) ([]byte, error) {
	release := func() {
		w.mu.Lock()
		w.inflight--
		w.lastActive = w.m.now()
		w.mu.Unlock()
	}
	id := "ws-" + strconv.FormatUint(w.m.pool.reqSeq.Add(1), 10)
	origID, hadID := obj["id"]
	obj["id"] = json.RawMessage(strconv.Quote(id))
	line, err := json.Marshal(obj)
	if err != nil {
		release()
		return nil, fmt.Errorf("%w: %w", ErrBadCommand, err)
	}
	if len(line) > w.m.cfg.MaxCommandBytes {
		release()
		return nil, fmt.Errorf("%w: %d bytes exceeds the %d-byte limit", ErrBadCommand, len(line), w.m.cfg.MaxCommandBytes)
	}
	line = append(line, '\n')

	ch := make(chan reply, 1)
	w.mu.Lock()
	if w.exited {
		err := w.exitErr
		w.inflight--
		w.mu.Unlock()
		return nil, err
	}
	if w.stopping || w.dead {
		w.inflight--
		w.mu.Unlock()
		return nil, fmt.Errorf("%w: worker %s is stopping", ErrWorkerExit, w.id)
	}
	w.pending[id] = ch
	if c != nil {
		c.id = id
	}
	w.requests++
	w.lastActive = w.m.now()
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.pending, id)
		w.inflight--
		w.lastActive = w.m.now()
		w.mu.Unlock()
	}()

	if err := w.write(ctx, line); err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		if hadID {
			return wire.RestoreID(r.line, origID), nil
		}
		return r.line, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("workers: waiting for response to %s from worker %s: %w", id, w.id, ctx.Err())
	}
}

// write writes one line to the worker's stdin under ctx. A write cut short
// midway leaves a broken line in the worker's input, so the worker is
// stopped: its stream can no longer be trusted.
func (w *worker) write(ctx context.Context, line []byte) error {
	select {
	case w.wsem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("%w: waiting to write to worker %s: %w", ErrWriteFailed, w.id, ctx.Err())
	}
	defer func() { <-w.wsem }()
	// Only ctx cuts the write, from a callback that runs once ctx is done:
	// a file deadline set to ctx's own deadline could fire first, while
	// ctx.Err() is still nil, and the same cause would be reported as a
	// failed write instead of a timeout (issue 13).
	_ = w.stdin.SetWriteDeadline(time.Time{}) // clear a previous writer's cut
	cut := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = w.stdin.SetWriteDeadline(time.Now())
		close(cut)
	})
	n, err := w.stdin.Write(line)
	if !stop() {
		<-cut // the callback ran or is running: let it finish before the next writer
	}
	if err != nil {
		if n > 0 {
			w.m.log.Warn("partial command write; stopping worker", "worker", w.id, "key", w.key, "written", n, "err", err)
			w.m.terminate(w, ExitStopped)
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			// ctx cut the write short (the cut is only ever set after ctx
			// is done): report the context's error, not the file's.
			err = ctxErr
		}
		return fmt.Errorf("%w: worker %s: %w", ErrWriteFailed, w.id, err)
	}
	return nil
}

type lineHeader struct {
	Type    string          `json:"type"`
	ID      json.RawMessage `json:"id"`
	Success *bool           `json:"success"`
}

// start runs the worker's I/O goroutines and its wait; call it once the
// worker is registered with the manager. The wait goroutine starts when
// the process has exited, where the platform watches exits for every
// worker at once (Linux: pidfds); else at once, blocked in waitid, which
// holds an OS thread for the worker's life (about 45 KiB; issue 22).
func (w *worker) start() {
	w.m.wait.workers.Add(1)
	go w.readStdout()
	go w.readStderr()
	if !w.m.plat.watchExit(w.pid, func() { go w.wait() }) {
		go w.wait()
	}
}

// readStdout routes responses to pending calls and fans out everything else.
func (w *worker) readStdout() {
	defer close(w.readDone)
	// CPU profiles show the routing of worker output as operation=events.
	proflabel.SetGoroutine(proflabel.Events)
	// The read buffer comes from the Manager's pool while output flows:
	// an idle worker's reader holds none.
	lr := wire.NewLineReader(w.stdout, w.m.cfg.MaxLineBytes, &w.m.readBufs)
	for {
		line, oversize, err := lr.Next()
		if oversize {
			n := w.m.counts.oversizeLines.Add(1)
			w.m.logLimited(n, "worker printed a line over the size limit; skipped", "worker", w.id, "key", w.key, "limit", w.m.cfg.MaxLineBytes)
		} else if len(bytes.TrimSpace(line)) > 0 {
			w.handleLine(line, lr.Owned())
		}
		if err != nil {
			return
		}
	}
}

// handleLine routes one line. A line lent from the read buffer (!owned) is
// copied if kept; a long line was assembled for us and is kept as it is.
func (w *worker) handleLine(line []byte, owned bool) {
	var hdr lineHeader
	var ag *agentev.Line // pi's agent events, decoded with the header in one pass
	trimmed := bytes.TrimLeft(line, " \t")
	var err error
	switch {
	case len(trimmed) == 0 || trimmed[0] != '{':
		err = errNotObject
	case agentev.Prefixed(trimmed):
		var both struct {
			lineHeader
			agentev.Line
		}
		if err = json.Unmarshal(line, &both); err == nil {
			hdr, ag = both.lineHeader, &both.Line
		} else {
			// Still a line for the subscribers if its header decodes;
			// agentEvent finds the rest malformed and counts it.
			err = json.Unmarshal(line, &hdr)
		}
	default:
		err = json.Unmarshal(line, &hdr)
	}
	if err != nil {
		n := w.m.counts.invalidLines.Add(1)
		w.m.logLimited(n, "worker printed a line that is not a JSON object; skipped", "worker", w.id, "key", w.key, "line", wire.Truncate(line, 200))
		return
	}
	if !owned {
		line = bytes.Clone(line)
	}
	now := w.m.now()
	w.mu.Lock()
	w.answered = true
	if hdr.Type == "response" && len(hdr.ID) > 0 {
		var id string
		if json.Unmarshal(hdr.ID, &id) != nil {
			id = string(hdr.ID)
		}
		if ch, ok := w.pending[id]; ok {
			delete(w.pending, id)
			w.responseLocked(id, hdr.Success)
			w.mu.Unlock()
			ch <- reply{line: line}
			return
		}
		w.mu.Unlock()
		w.m.counts.unmatched.Add(1)
	} else {
		switch hdr.Type {
		case "agent_end":
			w.lastEvent = time.Time{}
		case "agent_start":
			w.lastEvent = now
			w.agentStartLocked(now)
		default:
			w.lastEvent = now
		}
		w.mu.Unlock()
	}
	ev := Event{Key: w.key, WorkerID: w.id, Type: hdr.Type, Data: line} // line is ours to keep (lineReader)
	w.s.publish(ev)
	w.streamEvent(ev)
	if agentev.Is(hdr.Type) {
		w.agentEvent(hdr.Type, line, ag, now)
	}
	if hdr.Type == "agent_end" {
		w.flushAgent(now) // steps the run left open end with it
		w.agentEnd()      // after the event went to the run's span
	}
}

// readStderr keeps the tail of stderr for crash reports and hands its
// lines to Config.OnStderr.
func (w *worker) readStderr() {
	defer close(w.errDone)
	var lines *stderrLines
	if w.m.cfg.OnStderr != nil {
		lines = newStderrLines(w)
	}
	// As stdout: a read buffer from the pool only while stderr flows.
	cr := wire.NewChunkReader(w.stderrR, &w.m.readBufs)
	for {
		b, err := cr.Next()
		if len(b) > 0 {
			w.mu.Lock()
			w.stderr.Write(b)
			w.mu.Unlock()
			if lines != nil {
				lines.write(b)
			}
		}
		if err != nil {
			if lines != nil {
				lines.flush()
			}
			return
		}
	}
}

// wait reaps the process, fails pending calls, hands the session back to the
// manager, then makes sure nothing of the worker's tree is left.
func (w *worker) wait() {
	defer w.m.wait.workers.Done()
	waitErr := w.cmd.Wait()
	w.m.plat.forget(w.pid)
	// Decide at once whether this was asked for: a stop, eviction or reap
	// arriving during the drain below must not relabel a crash.
	oom := w.m.oomKilled(w)
	w.mu.Lock()
	w.dead = true
	reason := w.stopReason
	limit := w.limitErr
	switch {
	case reason == "" && oom:
		reason = ExitOOMKilled
		limit = &LimitError{Limit: LimitMemory, Max: w.m.cfg.MemoryMax, By: "oom_killer"}
	case reason == "":
		reason = ExitCrashed
	case w.escalated && limit == nil:
		reason = ExitKilled
	}
	w.mu.Unlock()
	close(w.procExited)
	// Let the last lines (a final response, the crash message) arrive.
	drain := time.NewTimer(200 * time.Millisecond)
	for _, ch := range []chan struct{}{w.readDone, w.errDone} {
		select {
		case <-ch:
		case <-drain.C:
		}
	}
	drain.Stop()

	status := "exited"
	if w.cmd.ProcessState != nil {
		status = w.cmd.ProcessState.String()
	} else if waitErr != nil {
		status = waitErr.Error()
	}
	w.flushAgent(time.Now())
	w.mu.Lock()
	xe := &ExitError{WorkerID: w.id, Key: w.key, Reason: reason, Status: status, StderrTail: w.stderr.String(), Limit: limit}
	w.exited = true
	w.exitErr = xe
	w.exitRunsLocked()
	pending := w.pending
	w.pending = map[string]chan reply{}
	w.mu.Unlock()
	if limit != nil {
		w.m.log.Warn("worker stopped at its resource limit", "worker", w.id, "key", w.key, "pid", w.pid, "reason", reason, "status", status, "limit", limit.Error())
	} else if reason == ExitCrashed {
		w.m.log.Warn("worker crashed", "worker", w.id, "key", w.key, "pid", w.pid, "status", status, "stderr_tail", wire.Truncate([]byte(xe.StderrTail), 512))
	} else {
		w.m.log.Info("worker exited", "worker", w.id, "key", w.key, "pid", w.pid, "reason", reason, "status", status)
	}
	// Hand the session back (and record back-off) before failing callers,
	// so a caller that retries at once sees the new state.
	w.m.onExit(w, xe)
	for _, ch := range pending {
		ch <- reply{err: xe}
	}

	w.m.sweep(w)
	w.m.plat.release(w.cg)
	// Last: the uid is handed out again only once nothing runs as it.
	w.m.releaseIsolation(w.iso)
	_ = w.stdin.Close()
	_ = w.stdout.Close()
	_ = w.stderrR.Close()
	<-w.readDone
	<-w.errDone
	close(w.done)
}
