package workers

import (
	"context"
	"slices"
	"sync"
	"time"
)

// CommandTracer follows each command that Send routes to a worker. The
// telemetry outside this package implements it (telemetry/oteltrace turns
// each command into a span); workers itself knows nothing of tracing.
type CommandTracer interface {
	// StartCommand is called when Send has parsed a command, before a
	// worker is acquired, with the session key and the command's type.
	// The returned context replaces ctx for the rest of Send (a span goes
	// in it, so OnRPC and OnStderr see it); the returned CommandSpan, if
	// not nil, receives the command's streamed events and its end.
	StartCommand(ctx context.Context, key, typ string) (context.Context, CommandSpan)
}

// CommandSpan receives what happens to one command while it runs.
type CommandSpan interface {
	// Event is called for each event the worker streams while the command
	// is in flight, from the worker's read goroutine: it must not block.
	Event(ev Event)
	// End is called once, before Send returns, with the command's outcome
	// (its Cost when measured).
	End(r RPCResult)
	// TraceID names the command in GET /api/metrics' last_commands (""
	// when it has none, e.g. not sampled).
	TraceID() string
}

// Cost is what one command cost its worker's whole process tree, read
// from /proc at the command's start and end (Linux only; elsewhere
// RPCResult.Cost is nil).
type Cost struct {
	// CPUUser and CPUSystem are the tree's user and system CPU time
	// between the command's start and its response: the worker and its
	// live descendants, plus descendants that exited and were reaped
	// inside the tree during the command (their time moves into the
	// reaping parent's cutime/cstime, which is counted), exact to the
	// kernel's clock-tick accounting (10 ms).
	CPUUser, CPUSystem time.Duration
	// MemoryPeak is the highest resident set size of the tree, in bytes,
	// seen at the command's start, its end, and every sampling read in
	// between (Config.CostSampleInterval).
	MemoryPeak int64
	// Processes counts processes that started in the tree during the
	// command and were seen by one of those reads (a child that lives
	// shorter than the sampling interval between two reads is not
	// counted; its CPU time is).
	Processes int
	// Shared is true when another command was in flight on the same
	// worker at some time during this one: the tree's cost is not split
	// between them, each command reports the whole tree's.
	Shared bool
}

// CPU is the tree's user plus system CPU time during the command.
func (c *Cost) CPU() time.Duration { return c.CPUUser + c.CPUSystem }

// CommandSummary is one finished command of a worker, as kept for
// WorkerSnapshot.LastCommands.
type CommandSummary struct {
	Type      string
	Duration  time.Duration
	ErrorType string
	// CPU is Cost.CPU(); HasCost is false when cost was not measured.
	CPU     time.Duration
	HasCost bool
	TraceID string
	EndedAt time.Time
}

// clockTicks is USER_HZ, the unit of /proc's CPU times (100 on every
// Linux architecture Go supports).
const clockTicks = 100

// treeSample is one targeted reading of a worker's tree.
type treeSample struct {
	// utime and stime sum, over the tree's processes, their own time plus
	// their reaped children's (cutime, cstime), in clock ticks.
	utime, stime uint64
	rss          int64       // bytes
	members      [][2]uint64 // (pid, start time) of each process read
}

// LastCommandsKept is how many finished commands each worker remembers
// for WorkerSnapshot.LastCommands.
const LastCommandsKept = 5

// cmdState is one command in flight on a worker.
type cmdState struct {
	ctx    context.Context
	span   CommandSpan
	start  time.Time
	events int // guarded by the worker's mu

	// cost bookkeeping, guarded by mu (the sampling timer and the
	// command's own goroutine both touch it)
	mu      sync.Mutex
	measure bool
	startOK bool
	first   treeSample
	peak    int64
	seen    [][2]uint64 // (pid, start time) of processes seen after the start
	shared  bool
	timer   *time.Timer
	done    bool
}

// startCommand hands the command to the tracer, if any.
func (m *Manager) startCommand(ctx context.Context, key, typ string) (context.Context, CommandSpan) {
	if m.cfg.Tracer == nil {
		return ctx, nil
	}
	return m.cfg.Tracer.StartCommand(ctx, key, typ)
}

// costOn reports whether commands are measured: someone listens and the
// platform can read trees.
func (m *Manager) costOn() bool {
	return !m.cfg.DisableCommandCost && (m.cfg.OnRPC != nil || m.cfg.Tracer != nil) && m.plat.canReadTrees()
}

// beginCommand registers the command on w (for its events and its stderr)
// and takes the start reading of w's tree.
func (m *Manager) beginCommand(ctx context.Context, w *worker, span CommandSpan) *cmdState {
	c := &cmdState{ctx: ctx, span: span, start: time.Now(), measure: m.costOn()}
	w.mu.Lock()
	c.shared = len(w.active) > 0 || w.inflight > 1
	for _, o := range w.active {
		o.markShared()
	}
	w.active = append(w.active, c)
	w.mu.Unlock()
	if c.measure {
		var s treeSample
		if m.plat.readTree(w, &s) {
			c.first, c.startOK, c.peak = s, true, s.rss
		}
		if c.startOK && m.cfg.CostSampleInterval > 0 {
			c.mu.Lock()
			c.timer = time.AfterFunc(m.cfg.CostSampleInterval, func() { m.sampleCommand(w, c) })
			c.mu.Unlock()
		}
	}
	return c
}

func (c *cmdState) markShared() {
	c.mu.Lock()
	c.shared = true
	c.mu.Unlock()
}

// sampleCommand is a reading between start and end, for the memory peak
// and the processes started.
func (m *Manager) sampleCommand(w *worker, c *cmdState) {
	var s treeSample
	ok := m.plat.readTree(w, &s)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return
	}
	if ok {
		c.observeLocked(&s)
	}
	c.timer.Reset(m.cfg.CostSampleInterval)
}

// observeLocked folds a later reading into the peak and the processes seen.
func (c *cmdState) observeLocked(s *treeSample) {
	c.peak = max(c.peak, s.rss)
	for _, id := range s.members {
		if !slices.Contains(c.first.members, id) && !slices.Contains(c.seen, id) {
			c.seen = append(c.seen, id)
		}
	}
}

// endCommand takes the end reading, unregisters the command from w and
// returns its cost (nil when not measured) and the events it saw.
func (m *Manager) endCommand(w *worker, c *cmdState) (*Cost, int) {
	var cost *Cost
	if c.measure && c.startOK {
		var s treeSample
		ok := m.plat.readTree(w, &s)
		c.mu.Lock()
		c.done = true
		if c.timer != nil {
			c.timer.Stop()
		}
		if ok {
			c.observeLocked(&s)
			cost = &Cost{
				CPUUser:    ticks(s.utime, c.first.utime),
				CPUSystem:  ticks(s.stime, c.first.stime),
				MemoryPeak: c.peak,
				Processes:  len(c.seen),
			}
		}
		c.mu.Unlock()
	}
	w.mu.Lock()
	if i := slices.Index(w.active, c); i >= 0 {
		w.active = slices.Delete(w.active, i, i+1)
	}
	events := c.events
	w.mu.Unlock()
	if cost != nil {
		c.mu.Lock()
		cost.Shared = c.shared
		c.mu.Unlock()
	}
	return cost, events
}

// ticks converts a clock-tick difference to a duration; a tree that lost
// a process between the readings (reaped outside it) never reports less
// than nothing.
func ticks(end, start uint64) time.Duration {
	if end <= start {
		return 0
	}
	return time.Duration(end-start) * (time.Second / clockTicks)
}

// remember keeps r as one of w's last commands.
func (w *worker) remember(r RPCResult, traceID string) {
	s := CommandSummary{Type: r.Type, Duration: r.Duration, ErrorType: r.ErrorType, TraceID: traceID, EndedAt: time.Now()}
	if r.Cost != nil {
		s.CPU, s.HasCost = r.Cost.CPU(), true
	}
	w.mu.Lock()
	if len(w.last) == LastCommandsKept {
		copy(w.last, w.last[1:])
		w.last = w.last[:LastCommandsKept-1]
	}
	w.last = append(w.last, s)
	w.mu.Unlock()
}

// activeContext is the context of the newest command in flight on w, or
// context.Background(). The caller holds w.mu.
func (w *worker) activeContextLocked() context.Context {
	if n := len(w.active); n > 0 {
		return w.active[n-1].ctx
	}
	return context.Background()
}

// streamEvent hands ev to the spans of the commands in flight on w. It is
// called from w's stdout reader only, which owns w.spanBuf.
func (w *worker) streamEvent(ev Event) {
	w.mu.Lock()
	if len(w.active) == 0 {
		w.mu.Unlock()
		return
	}
	w.spanBuf = w.spanBuf[:0]
	for _, c := range w.active {
		c.events++
		if c.span != nil {
			w.spanBuf = append(w.spanBuf, c.span)
		}
	}
	w.mu.Unlock()
	for _, sp := range w.spanBuf {
		sp.Event(ev)
	}
	clear(w.spanBuf)
}
