package workers

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// State is a worker's lifecycle state.
type State string

// Worker states.
const (
	StateStarting State = "starting" // spawned, has not answered yet
	StateIdle     State = "idle"     // alive, nothing in flight
	StateRunning  State = "running"  // a command in flight, events streaming, or an agent run under way
	StateStopping State = "stopping" // SIGTERM sent, waiting for exit
	StateExited   State = "exited"
)

// States lists every State, for metrics that report counts by state.
var States = []State{StateStarting, StateIdle, StateRunning, StateStopping, StateExited}

// ExitReason says why a worker ended.
type ExitReason string

// Exit reasons.
const (
	ExitIdleReaped ExitReason = "idle_reaped" // idle past IdleTTL
	ExitStopped    ExitReason = "stopped"     // Stop, Close, or supervisor shutdown
	ExitCrashed    ExitReason = "crashed"     // exited or died without being asked
	ExitKilled     ExitReason = "killed"      // asked to stop, ignored SIGTERM, SIGKILLed after StopGrace
	ExitLimit      ExitReason = "limit"       // evicted to make room under MaxWorkers
	// ExitMemoryLimit: the watchdog stopped a tree over MemoryMax.
	ExitMemoryLimit ExitReason = "memory_limit"
	// ExitOOMKilled: the kernel OOM killer killed the worker inside its
	// cgroup (over MemoryMax).
	ExitOOMKilled ExitReason = "oom_killed"
	// ExitPidsLimit: the watchdog stopped a tree over PidsMax.
	ExitPidsLimit ExitReason = "pids_limit"
)

// ExitReasons lists every ExitReason.
var ExitReasons = []ExitReason{ExitIdleReaped, ExitStopped, ExitCrashed, ExitKilled, ExitLimit,
	ExitMemoryLimit, ExitOOMKilled, ExitPidsLimit}

// WorkerSnapshot describes one worker at one moment. It has no JSON form of
// its own: each consumer (GET /api/workers, GET /api/metrics) renders the
// fields it shows.
type WorkerSnapshot struct {
	ID         string
	Key        string
	PID        int
	State      State
	StartedAt  time.Time
	LastActive time.Time
	// Idle is the time since the last user-initiated command (sent or
	// answered).
	Idle     time.Duration
	Requests uint64
	// Restarts counts respawns of this session after crashes.
	Restarts int
	// Zombie: alive, not running, and idle for longer than IdleTTL (the
	// reaper failed or a stop is stuck). A running worker is never one.
	Zombie bool
	// StartTicks is the worker process's start time in clock ticks after
	// boot (Linux), identifying it across PID reuse; 0 when unknown.
	StartTicks uint64
	// MemoryMax, PidsMax and CPUMax are the worker's limits (0 = none);
	// render usage as a share of them.
	MemoryMax int64
	PidsMax   int64
	CPUMax    float64
	// Cgroup is the worker's cgroup (its v2 directory, else a v1 one);
	// "" when it has none.
	Cgroup string
	// LimitHits counts this worker's limit events by limit name (forks
	// refused at pids.max, OOM kills, CPU-throttled periods).
	LimitHits map[string]uint64
	// UID is the uid the worker's tree runs as (tier 2); 0 when it runs
	// as the supervisor's (a worker uid is never 0).
	UID int
	// Sandboxed is true when the worker was started under Landlock.
	Sandboxed bool
	// LastCommands are the worker's last finished commands (at most
	// 5), oldest first.
	LastCommands []CommandSummary
	// Agent is the session's agent activity (model calls, tokens, spend)
	// and this worker's last tool calls; nil when it has none.
	Agent *AgentSnapshot
}

// Stats are the manager's cumulative counters and current counts.
type Stats struct {
	Spawns        uint64
	SpawnFailures uint64
	Exits         map[ExitReason]uint64
	ByState       map[State]int
	// InvalidLines counts worker output lines that were not JSON objects.
	InvalidLines uint64
	// OversizeLines counts lines longer than MaxLineBytes.
	OversizeLines uint64
	// UnmatchedResponses counts responses whose id matched no pending
	// command (for example after the caller gave up).
	UnmatchedResponses uint64
	// EventsDropped counts events lost by subscribers that fell behind.
	EventsDropped uint64
	// OrphansReaped counts re-parented descendants reaped by the supervisor.
	OrphansReaped uint64
	// Subscribers is the number of open event subscriptions.
	Subscribers int
	// SubscriberBytes is the event data buffered for all subscriptions
	// and not yet received (at most Config.SubscriberBytesBudget).
	SubscriberBytes int64
	// MaxWorkers is the configured pool limit.
	MaxWorkers int
	// CrashLooping is the number of sessions whose last 3
	// or more workers in a row crashed (each within a minute of its
	// start, else the count restarts): they respawn only after a back-off.
	CrashLooping int
	// LimitHits counts limit events by limit name (LimitNames): "memory"
	// counts OOM kills in worker cgroups and watchdog stops; "pids" forks
	// refused at pids.max and watchdog stops; "cpu" CFS periods in which a
	// worker's cgroup was throttled.
	LimitHits map[string]uint64
	// LeftoversKilled counts processes of dead supervisor instances that
	// New found and killed.
	LeftoversKilled uint64
	// StderrLinesDropped counts worker stderr lines not handed to
	// Config.OnStderr because the worker was over its rate.
	StderrLinesDropped uint64
	// UIDsInUse is the number of worker uids held by live or stopping
	// trees; UIDsExhausted counts spawns refused because none was free.
	UIDsInUse     int
	UIDsExhausted uint64
	// AgentEventsSkipped counts agent events (message_*,
	// tool_execution_*) that did not decode, and ends without a start.
	AgentEventsSkipped uint64
	// BudgetsExceeded counts sessions that went past a budget, by
	// BudgetNames.
	BudgetsExceeded map[string]uint64
}

// crashLoopCrashes is how many consecutive crashes make a session count as
// crash-looping in Stats.
const crashLoopCrashes = 3

// Event is one line a worker printed that was not a response to a pending
// command, or a lifecycle event the manager adds (see Lifecycle).
type Event struct {
	Key      string
	WorkerID string
	Type     string
	// Data is the whole JSON object line.
	Data json.RawMessage
	// Lifecycle is set, and Data is its JSON, when the Manager added the
	// event.
	Lifecycle *Lifecycle
}

// Errors returned by Manager methods; match with errors.Is.
var (
	ErrClosed      = errors.New("workers: manager closed")
	ErrPoolFull    = errors.New("workers: pool full: every worker is busy")
	ErrNotFound    = errors.New("workers: no worker for session")
	ErrBadCommand  = errors.New("workers: bad command")
	ErrSpawn       = errors.New("workers: spawn failed")
	ErrBackoff     = errors.New("workers: session is backing off after crashes")
	ErrWorkerExit  = errors.New("workers: worker exited")
	ErrWriteFailed = errors.New("workers: write to worker failed")
)

// ExitError reports a worker that ended while a command was pending.
type ExitError struct {
	WorkerID string
	Key      string
	Reason   ExitReason
	// Status is the process status, e.g. "exit status 3" or "signal: killed".
	Status string
	// StderrTail is the end of the worker's stderr (worker-controlled text).
	StderrTail string
	// Limit is set when the worker was stopped or OOM-killed for exceeding
	// a resource limit (reasons memory_limit, oom_killed, pids_limit).
	Limit *LimitError
}

func (e *ExitError) Error() string {
	msg := fmt.Sprintf("worker %s (session %q) exited (%s, %s)", e.WorkerID, e.Key, e.Reason, e.Status)
	if e.Limit != nil {
		msg += ": " + e.Limit.Error()
	}
	if e.StderrTail != "" {
		msg += "; stderr tail:\n" + e.StderrTail
	}
	return msg
}

// Is makes errors.Is(err, ErrWorkerExit) true, and errors.Is(err,
// ErrLimitExceeded) when a limit ended the worker.
func (e *ExitError) Is(target error) bool {
	return target == ErrWorkerExit || (target == ErrLimitExceeded && e.Limit != nil)
}

// Unwrap returns the limit error, if any, for errors.As.
func (e *ExitError) Unwrap() error {
	if e.Limit == nil {
		return nil
	}
	return e.Limit
}

// BackoffError reports a session that may not respawn before RetryAfter.
type BackoffError struct {
	Key        string
	RetryAfter time.Duration
	Last       error
}

func (e *BackoffError) Error() string {
	msg := fmt.Sprintf("workers: session %q crashed repeatedly; next spawn in %s", e.Key, e.RetryAfter.Round(time.Millisecond))
	if e.Last != nil {
		msg += ": last exit: " + e.Last.Error()
	}
	return msg
}

// Is makes errors.Is(err, ErrBackoff) true.
func (e *BackoffError) Is(target error) bool { return target == ErrBackoff }

// CgroupUsage is what a worker's cgroup files say about its whole tree
// (Manager.WorkerCgroupUsage): the kernel charges each figure to the group
// as it happens, so exited processes and descendants that escaped their
// ancestry are included. A figure the worker's cgroups cannot give has its
// Has flag false; see docs/limits.md for which tier gives which.
type CgroupUsage struct {
	// HasCPU: CPU time from cpu.stat (user_usec, system_usec; every v2
	// group has it) or cpuacct (v1), cumulative since the group was made.
	HasCPU             bool
	CPUUser, CPUSystem time.Duration
	// HasMemory: MemoryBytes is the group's working set, as the kubelet
	// reckons it: the memory charged to it (memory.current, or v1
	// memory.usage_in_bytes: anonymous memory and the page cache it
	// brought in, shared pages once) less its inactive file pages
	// (memory.stat), the cache reclaimed first. MemoryCharged is the
	// charge itself.
	HasMemory     bool
	MemoryBytes   int64
	MemoryCharged int64
	// HasTasks: pids.current, the tasks (threads, and exited ones not yet
	// reaped) the group holds, as pids.max counts them.
	HasTasks bool
	Tasks    int64
}

// What a reading of a worker's cgroup asks for (platform.cgroupUsage):
// a command's cost needs CPU and memory only.
const (
	cgroupReadCPU = 1 << iota
	cgroupReadMemory
	cgroupReadTasks
	cgroupReadAll = cgroupReadCPU | cgroupReadMemory | cgroupReadTasks
)
