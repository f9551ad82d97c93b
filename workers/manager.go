package workers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/workerscope/workerscope/workers/internal/agentev"
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
	recovery recovery           // this instance's lock, dead instances' leftovers (enforce.go)
	reaper   loop               // idle workers, unused sessions, orphans (reaper.go)
	wait     struct {
		workers sync.WaitGroup // one per worker, until its tree is gone
		spawns  sync.WaitGroup // spawns in progress
		runs    sync.WaitGroup // runs followed after their command's response, aborts
	}
	counts counters
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
	plat, err := newPlatform(m, !cfg.DisableSubreaper)
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

// spawn starts a worker process for s.
func (m *Manager) spawn(s *session) (*worker, error) {
	id := fmt.Sprintf("%s-%d", m.id, m.pool.workerSeq.Add(1))
	cmd := exec.Command(m.cfg.Command[0], m.cfg.Command[1:]...)
	cmd.Dir = m.cfg.Dir
	cmd.Env = append(append(m.baseEnv(), m.cfg.Env...), MarkerEnv+"="+id, KeyEnv+"="+s.key)

	var files []*os.File
	closeAll := func() {
		for _, f := range files {
			_ = f.Close()
		}
	}
	pipe := func() (r, w *os.File, err error) {
		r, w, err = os.Pipe()
		if err == nil {
			files = append(files, r, w)
		}
		return
	}
	inR, inW, err1 := pipe()
	outR, outW, err2 := pipe()
	errR, errW, err3 := pipe()
	if err := errors.Join(err1, err2, err3); err != nil {
		closeAll()
		return nil, fmt.Errorf("%w: pipes: %w", ErrSpawn, err)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	// Identity, directory and sandbox first: the cgroup shim (v1) then
	// runs as the worker's uid and execs the sandbox helper.
	iso, err := m.isolate(id, cmd)
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("%w: %s: %w", ErrSpawn, m.cfg.Command[0], err)
	}
	cg, err := m.plat.prepare(id, cmd)
	if err == nil && iso.uid >= 0 {
		err = m.plat.chownCgroup(cg, iso.uid)
	}
	if err != nil {
		closeAll()
		m.plat.release(cg)
		m.releaseIsolation(iso)
		return nil, fmt.Errorf("%w: %s: %w", ErrSpawn, m.cfg.Command[0], err)
	}
	if err := m.plat.start(cmd, cg); err != nil {
		closeAll()
		m.plat.release(cg)
		m.releaseIsolation(iso)
		return nil, fmt.Errorf("%w: %s: %w", ErrSpawn, m.cfg.Command[0], err)
	}
	_ = inR.Close()
	_ = outW.Close()
	_ = errW.Close()

	m.mu.Lock()
	restarts := s.restarts
	if s.crashed {
		s.restarts++
		restarts = s.restarts
		s.crashed = false
	}
	m.mu.Unlock()
	now := m.now()
	w := &worker{
		m: m, s: s, id: id, key: s.key, cmd: cmd, pid: cmd.Process.Pid,
		startedAt: now, restarts: restarts, lastActive: now,
		stdin: inW, stdout: outR, stderrR: errR,
		wsem:       make(chan struct{}, 1),
		procExited: make(chan struct{}),
		readDone:   make(chan struct{}),
		errDone:    make(chan struct{}),
		done:       make(chan struct{}),
		pending:    make(map[string]chan reply),
		stderr:     wire.NewTailBuffer(m.cfg.StderrTailBytes),
		cg:         cg,
		iso:        iso,
	}
	w.startTicks = m.plat.startTicks(w.pid)
	m.log.Debug("worker spawned", "worker", id, "key", s.key, "pid", w.pid)
	return w, nil
}

// baseEnv is the supervisor's environment less Config.EnvDrop and any
// inherited marker (a supervisor running inside another's worker must not
// hand its own marker down).
func (m *Manager) baseEnv() []string {
	env := os.Environ()
	out := env[:0:0]
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if name == MarkerEnv || name == KeyEnv || slices.ContainsFunc(m.cfg.EnvDrop, func(p string) bool { return strings.HasPrefix(name, p) }) {
			continue
		}
		out = append(out, kv)
	}
	return out
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
		if s.crashes >= CrashLoopCrashes && (s.w == nil || now.Sub(s.w.startedAt) <= time.Minute) {
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
