package workers

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/workerscope/workerscope/workers/internal/cost"
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
	// End is called once with the command's outcome (its Cost when
	// measured): before Send returns, or, for a command whose response is
	// followed by a streamed run (see Config.RunCommands), when the run
	// ends, with RPCResult.Run set. It must not block.
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

// RunEnd says how a command's streamed run ended.
type RunEnd string

// The ends of a run.
const (
	// RunEndAgentEnd: the worker streamed agent_end (also after an abort).
	RunEndAgentEnd RunEnd = "agent_end"
	// RunEndWorkerExit: the worker exited (crashed, was stopped, reaped or
	// killed at a limit) during the run.
	RunEndWorkerExit RunEnd = "worker_exit"
	// RunEndMaxDuration: the run was still going Config.MaxRunDuration
	// after the command's arrival; it is measured up to then.
	RunEndMaxDuration RunEnd = "max_duration"
)

// Run is the streamed run that followed a command's response: pi's
// prompt answers at once and then works until agent_end.
type Run struct {
	// Duration is from the command's arrival to the run's end
	// (RPCResult.Duration is to the response).
	Duration time.Duration
	// Cost is what the command and its whole run cost the worker's tree,
	// measured as RPCResult.Cost but up to the run's end (when the worker
	// exited, up to the last reading before it did); nil when not
	// measured.
	Cost *Cost
	// Events counts the events streamed during the command and its run.
	Events int
	// End says how the run ended.
	End RunEnd
	// Budget names the session budget whose excess aborted the run
	// (BudgetTokens, BudgetSpend; "" when none did).
	Budget string
}

// CommandSummary is one finished command of a worker, as kept for
// WorkerSnapshot.LastCommands.
type CommandSummary struct {
	Type string
	// Duration is to the response, or to the run's end for a command that
	// started a run (Run is then true).
	Duration  time.Duration
	Run       bool
	ErrorType string
	// CPU is Cost.CPU(); HasCost is false when cost was not measured.
	CPU     time.Duration
	HasCost bool
	TraceID string
	EndedAt time.Time
}

// lastCommandsKept is how many finished commands each worker remembers
// for WorkerSnapshot.LastCommands.
const lastCommandsKept = 5

// Phases of a command (cmdState.phase).
const (
	phaseCall  = iota // written or about to be, no response yet
	phaseAwait        // answered; a run may follow (agent_start awaited)
	phaseRun          // its run is streaming (it is the worker's runOwner)
	phaseOver         // no run follows, or its run has ended
)

// cmdState is one command in flight on a worker.
type cmdState struct {
	ctx   context.Context
	span  CommandSpan
	start time.Time

	// guarded by the worker's mu
	events   int
	id       string // the id on the wire, once written
	runType  bool   // its type is one of Config.RunCommands
	phase    int
	sawStart bool // agent_start arrived while it was in flight
	runEnd   chan struct{}
	endedBy  RunEnd // set before runEnd is closed ("" : no run followed)
	budget   string // the budget that aborted its run (agent.go)

	// cost bookkeeping, guarded by mu (the sampling timer and the
	// command's own goroutine both touch it)
	mu      sync.Mutex
	measure bool
	meter   cost.Meter
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
	return !m.cfg.DisableCommandCost && (m.cfg.OnRPC != nil || m.cfg.OnRun != nil || m.cfg.Tracer != nil) && m.plat.canReadTrees()
}

// beginCommand registers the command on w (for its events and its stderr)
// and takes the start reading of w's tree.
func (m *Manager) beginCommand(ctx context.Context, w *worker, span CommandSpan, typ string) *cmdState {
	c := &cmdState{ctx: ctx, span: span, start: time.Now(), measure: m.costOn(),
		runType: m.cfg.MaxRunDuration > 0 && slices.Contains(m.cfg.RunCommands, typ)}
	if c.runType {
		c.runEnd = make(chan struct{})
	}
	w.mu.Lock()
	c.shared = len(w.active) > 0 || w.inflight > 1
	for _, o := range w.active {
		o.markShared()
	}
	w.active = append(w.active, c)
	w.mu.Unlock()
	if c.measure {
		var s cost.Sample
		if m.plat.readTree(w, &s) {
			c.meter.Begin(s)
		}
		if c.meter.Started() && m.cfg.CostSampleInterval > 0 {
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
	var s cost.Sample
	ok := m.plat.readTree(w, &s)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return
	}
	if ok {
		c.meter.Observe(&s)
		w.observeTools(&s) // agentMu is a leaf lock
	}
	c.timer.Reset(m.cfg.CostSampleInterval)
}

// costNow takes a reading of w's tree and returns the cost since the
// command's start (nil when not measured). When the tree can no longer be
// read (the worker is gone), the latest earlier reading stands in.
func (m *Manager) costNow(w *worker, c *cmdState) *Cost {
	if !c.measure || !c.meter.Started() {
		return nil
	}
	var s cost.Sample
	ok := m.plat.readTree(w, &s)
	c.mu.Lock()
	defer c.mu.Unlock()
	if ok {
		c.meter.Observe(&s)
	}
	return costOf(&c.meter, c.shared)
}

// finishCommand stops the command's sampling, unregisters it from w and
// returns the events it saw.
func (m *Manager) finishCommand(w *worker, c *cmdState) int {
	c.mu.Lock()
	c.done = true
	if c.timer != nil {
		c.timer.Stop()
	}
	c.mu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	if i := slices.Index(w.active, c); i >= 0 {
		w.active = slices.Delete(w.active, i, i+1)
	}
	if w.runOwner == c {
		w.runOwner = nil
	}
	c.phase = phaseOver
	return c.events
}

// remember keeps r as one of w's last commands.
func (w *worker) remember(r RPCResult, traceID string) {
	s := CommandSummary{Type: r.Type, Duration: r.Duration, ErrorType: r.ErrorType, TraceID: traceID, EndedAt: time.Now()}
	cost := r.Cost
	if r.Run != nil {
		s.Duration, s.Run, cost = r.Run.Duration, true, r.Run.Cost
	}
	if cost != nil {
		s.CPU, s.HasCost = cost.CPU(), true
	}
	w.mu.Lock()
	if len(w.last) == lastCommandsKept {
		copy(w.last, w.last[1:])
		w.last = w.last[:lastCommandsKept-1]
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
