package workers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/workerscope/workerscope/workers/internal/fanout"
	"github.com/workerscope/workerscope/workers/internal/wire"
)

// Manager supervises workers. Create it with New; it is safe for concurrent
// use. Close it to stop every worker.
type Manager struct {
	cfg Config
	log *slog.Logger
	id  string // this instance: the prefix of its worker IDs
	// now is the clock of the pool's bookkeeping (idle times, back-off,
	// the running window, the reaper); tests drive it (export_test.go).
	now  func() time.Time
	plat *platform // spawning, signalling, cgroups, orphan reaping (proc_*.go, limits_*.go)

	// mu guards pool (see the lock order in doc.go); never held across I/O.
	mu   sync.Mutex
	pool pool

	events   *fanout.Hub[Event] // every session's subscribers and their byte budget (subscribe.go)
	limits   limiter            // the enforcement tier and its watchdog (enforce.go)
	iso      isolation          // worker uids, directories and sandbox (isolation.go)
	recovery recovery           // this instance's lock, dead instances' leftovers (recovery.go)
	reaper   loop               // idle workers, unused sessions, orphans (reaper.go)
	wait     struct {
		workers sync.WaitGroup // one per worker, until its tree is gone
		spawns  sync.WaitGroup // spawns in progress
		runs    sync.WaitGroup // runs followed after their command's response, aborts
	}
	counts counters
	// readBufs are the workers' stdout and stderr read buffers, held by a
	// worker only while its output flows (internal/wire).
	readBufs wire.BufferPool
}

// pool is the sessions and their live workers, guarded by Manager.mu
// (the sequences are atomic).
type pool struct {
	sessions map[string]*session
	live     map[*worker]struct{}
	byID     map[string]*worker // the live workers by ID (as live)
	spawning int                // spawns in progress: they count against MaxWorkers
	closed   bool

	workerSeq atomic.Uint64 // worker IDs
	reqSeq    atomic.Uint64 // command ids on the wire
}

// counters are the Manager's cumulative counts, for Stats.
type counters struct {
	spawns, spawnFailures                  atomic.Uint64
	invalidLines, oversizeLines, unmatched atomic.Uint64
	orphansReaped, leftoversKilled         atomic.Uint64
	stderrDropped                          atomic.Uint64
	agentSkipped                           atomic.Uint64 // agent events that did not decode (agent.go)
	exits                                  [numExitReasons]atomic.Uint64
	limitHits                              [numLimits]atomic.Uint64
	budgetHits                             [numBudgets]atomic.Uint64 // sessions that went past a budget, by BudgetNames
}

// numBudgets is len(BudgetNames).
const numBudgets = 2

const numExitReasons = 8

var exitReasonIndex = map[ExitReason]int{
	ExitIdleReaped: 0, ExitStopped: 1, ExitCrashed: 2, ExitKilled: 3, ExitLimit: 4,
	ExitMemoryLimit: 5, ExitOOMKilled: 6, ExitPidsLimit: 7,
}

// New validates cfg and starts a Manager. On Linux it makes the process a
// child subreaper unless cfg.DisableSubreaper is set.
func New(cfg Config) (*Manager, error) {
	return newWithClock(cfg, time.Now)
}

// newWithClock is New with the clock of the pool's bookkeeping.
func newWithClock(cfg Config, now func() time.Time) (*Manager, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("workers: instance id: %w", err)
	}
	m := &Manager{
		cfg:    cfg,
		log:    cfg.Logger,
		id:     "w" + hex.EncodeToString(b[:]),
		now:    now,
		events: fanout.NewHub[Event](cfg.SubscriberBufferBytes, cfg.SubscriberBytesBudget),
	}
	m.pool.sessions = make(map[string]*session)
	m.pool.live = make(map[*worker]struct{})
	m.pool.byID = make(map[string]*worker)
	plat, err := newPlatform(m.log, &m.counts.orphansReaped, !cfg.DisableSubreaper)
	if err != nil {
		return nil, err
	}
	m.plat = plat
	if err := m.setupLimits(); err != nil {
		plat.close()
		return nil, err
	}
	if err := m.setupIsolation(); err != nil {
		plat.close()
		return nil, err
	}
	m.recoverLeftovers()
	if err := m.recoverIsolation(); err != nil {
		plat.close()
		m.releaseRunLock()
		return nil, err
	}
	m.reaper.start(m.cfg.ReapInterval, m.reapPass)
	m.startWatchdog()
	return m, nil
}

// ID identifies this Manager: every worker ID it assigns (and so every
// WORKERSCOPE_WORKER_ID marker) starts with ID + "-".
func (m *Manager) ID() string { return m.id }

// Config returns the effective configuration (defaults filled in).
func (m *Manager) Config() Config { return m.cfg }

// Send sends one command to the session's worker, spawning it if needed,
// and returns the worker's response line. cmd must be a JSON object with a
// string "type"; the manager assigns the "id" used on the wire and puts the
// caller's own id, if any, back into the response. Send waits no longer
// than ctx allows.
func (m *Manager) Send(ctx context.Context, key string, cmd []byte) (json.RawMessage, error) {
	start := time.Now()
	if err := ValidateKey(key); err != nil {
		m.reportRPC(RPCResult{Context: ctx, Key: key}, start, err, false, nil)
		return nil, err
	}
	typ, obj, err := wire.ParseCommand(cmd)
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrBadCommand, err)
		m.reportRPC(RPCResult{Context: ctx, Key: key}, start, err, false, nil)
		return nil, err
	}
	ctx, span := m.startCommand(ctx, key, typ)
	res := RPCResult{Context: ctx, Key: key, Type: typ}
	if m.budgets().On() && slices.Contains(m.cfg.RunCommands, typ) {
		if err := m.overBudget(key); err != nil {
			m.reportRPC(res, start, err, false, span)
			return nil, err
		}
	}
	w, err := m.acquire(ctx, key)
	if err != nil {
		m.reportRPC(res, start, err, false, span)
		return nil, err
	}
	res.WorkerID, res.PID = w.id, w.pid
	c := m.beginCommand(ctx, w, span, typ)
	resp, err := w.call(ctx, obj, c)
	res.Cost = m.costNow(w, c)
	workerErr := false
	if err == nil {
		var r struct {
			Success *bool `json:"success"`
		}
		workerErr = json.Unmarshal(resp, &r) == nil && r.Success != nil && !*r.Success
	}
	if w.follows(c, err) {
		// A run may follow the response: report the response now, end the
		// span when the run ends (followRun).
		w.mu.Lock()
		res.Events = c.events
		w.mu.Unlock()
		res = m.completeRPC(res, start, err, workerErr)
		if m.cfg.OnRPC != nil {
			m.cfg.OnRPC(res)
		}
		m.wait.runs.Add(1)
		go m.followRun(w, c, res, start)
		return resp, err
	}
	res.Events = m.finishCommand(w, c)
	res, traceID := m.reportRPC(res, start, err, workerErr, span)
	w.remember(res, traceID)
	return resp, err
}

// completeRPC fills in r's outcome.
func (m *Manager) completeRPC(r RPCResult, start time.Time, err error, workerErr bool) RPCResult {
	r.ErrorType = ErrorCode(r.Context, err)
	if r.ErrorType == "" && workerErr {
		r.ErrorType = CodeWorkerError
	}
	r.Err = err
	r.Start = start
	r.Duration = time.Since(start)
	return r
}

// reportRPC completes r (error type, duration) and hands it to the span
// and to OnRPC; it returns r completed and the span's trace id.
func (m *Manager) reportRPC(r RPCResult, start time.Time, err error, workerErr bool, span CommandSpan) (RPCResult, string) {
	r = m.completeRPC(r, start, err, workerErr)
	traceID := ""
	if span != nil {
		span.End(r)
		traceID = span.TraceID()
	}
	if m.cfg.OnRPC != nil {
		m.cfg.OnRPC(r)
	}
	return r, traceID
}

// Snapshot describes every live worker, sorted by key. It never waits on a
// busy worker: it reads in-memory state only.
func (m *Manager) Snapshot() []WorkerSnapshot {
	m.mu.Lock()
	ws := make([]*worker, 0, len(m.pool.live))
	for w := range m.pool.live {
		ws = append(ws, w)
	}
	m.mu.Unlock()
	now := m.now()
	out := make([]WorkerSnapshot, len(ws))
	for i, w := range ws {
		out[i] = w.snapshot(now)
	}
	slices.SortFunc(out, func(a, b WorkerSnapshot) int {
		if a.Key != b.Key {
			if a.Key < b.Key {
				return -1
			}
			return 1
		}
		return a.StartedAt.Compare(b.StartedAt)
	})
	return out
}

// Stats returns the cumulative counters and current counts by state.
func (m *Manager) Stats() Stats {
	st := Stats{
		Spawns:             m.counts.spawns.Load(),
		SpawnFailures:      m.counts.spawnFailures.Load(),
		Exits:              make(map[ExitReason]uint64, len(ExitReasons)),
		ByState:            make(map[State]int, len(States)),
		InvalidLines:       m.counts.invalidLines.Load(),
		OversizeLines:      m.counts.oversizeLines.Load(),
		UnmatchedResponses: m.counts.unmatched.Load(),
		EventsDropped:      m.events.Dropped(),
		OrphansReaped:      m.counts.orphansReaped.Load(),
		Subscribers:        m.events.Subscribers(),
		SubscriberBytes:    m.events.Bytes(),
		MaxWorkers:         m.cfg.MaxWorkers,
		LimitHits:          make(map[string]uint64, numLimits),
		LeftoversKilled:    m.counts.leftoversKilled.Load(),
		StderrLinesDropped: m.counts.stderrDropped.Load(),
		UIDsExhausted:      m.iso.exhausted.Load(),
		AgentEventsSkipped: m.counts.agentSkipped.Load(),
		BudgetsExceeded:    make(map[string]uint64, len(BudgetNames)),
	}
	for i, name := range BudgetNames {
		st.BudgetsExceeded[name] = m.counts.budgetHits[i].Load()
	}
	if m.iso.pool != nil {
		st.UIDsInUse = m.iso.pool.InUse()
	}
	for i, name := range LimitNames {
		st.LimitHits[name] = m.counts.limitHits[i].Load()
	}
	for r, i := range exitReasonIndex {
		st.Exits[r] = m.counts.exits[i].Load()
	}
	for _, s := range States {
		st.ByState[s] = 0
	}
	now := m.now()
	m.mu.Lock()
	for w := range m.pool.live { // counts only: no snapshot copies, no sort
		s, _ := w.status(now)
		st.ByState[s]++
	}
	for _, s := range m.pool.sessions {
		// A respawned worker that has lived a minute ends the loop (its
		// next crash starts the count again).
		if s.crashes >= crashLoopCrashes && (s.w == nil || now.Sub(s.w.startedAt) <= time.Minute) {
			st.CrashLooping++
		}
	}
	m.mu.Unlock()
	return st
}

// logLimited logs the 1st, 10th, 100th, ... occurrence of a repeated
// problem, so a flooding worker cannot flood the log too.
func (m *Manager) logLimited(n uint64, msg string, args ...any) {
	for p := uint64(1); p <= n; p *= 10 {
		if p == n {
			m.log.Warn(msg, append(args, "occurrences", n)...)
			return
		}
	}
}
