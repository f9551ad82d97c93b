package workers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/workerscope/workerscope/internal/sandbox"
)

// MarkerEnv is the environment variable set to the worker's ID in every
// worker's environment. Every descendant inherits it, so processes that
// were re-parented away from the worker (a `cmd &` job of pi's bash tool,
// a double fork, a setsid) are still attributed to it and die with it.
const MarkerEnv = "WORKERSCOPE_WORKER_ID"

// KeyEnv carries the session key into the worker's environment.
const KeyEnv = "WORKERSCOPE_SESSION_KEY"

// Defaults of the subscriber byte bounds (Config).
const (
	DefaultSubscriberBufferBytes = 32 << 20
	DefaultSubscriberBytesBudget = 256 << 20
)

// Config configures a Manager. Zero values take the documented defaults.
type Config struct {
	// Command is the worker's argv, e.g. ["pi", "--mode", "rpc"]. Required.
	Command []string
	// Env is added to the supervisor's own environment for each worker.
	Env []string
	// EnvDrop removes variables of the supervisor's environment whose
	// names start with one of these prefixes before Env is added (e.g. the
	// supervisor's own secrets).
	EnvDrop []string
	// Dir is the worker's working directory ("" = the supervisor's).
	Dir string

	// IdleTTL: a worker idle for longer is stopped (reason idle_reaped).
	// Default 10m. Negative disables reaping (and the zombie flag).
	IdleTTL time.Duration
	// MaxWorkers bounds the live workers. When the pool is full, the
	// longest-idle idle worker is evicted (reason limit); when every worker
	// is busy, the request fails with ErrPoolFull. Default 64.
	MaxWorkers int
	// StopGrace is the time between SIGTERM and SIGKILL. Default 5s;
	// negative sends SIGKILL at once.
	StopGrace time.Duration

	// MaxLineBytes bounds one line of worker output. Longer lines are
	// skipped and counted; a worker's reader keeps a line only until it
	// passes the limit, so it holds at most MaxLineBytes (plus a 64 KiB
	// read buffer, pooled: held only while the worker's output flows) at
	// a time. Default 16 MiB.
	MaxLineBytes int
	// MaxCommandBytes bounds one command sent to a worker. Default 16 MiB.
	MaxCommandBytes int
	// StderrTailBytes is how much of a worker's stderr is kept for crash
	// reports. Default 4 KiB.
	StderrTailBytes int
	// EventBuffer is each subscriber's buffer, in events; a subscriber
	// that falls further behind loses events (counted). Default 256.
	EventBuffer int
	// SubscriberBufferBytes bounds the event data buffered for one
	// subscriber, in bytes; an event that does not fit is dropped for it
	// (counted, like one over EventBuffer). Default 32 MiB.
	SubscriberBufferBytes int64
	// SubscriberBytesBudget bounds the event data buffered for all
	// subscribers together, in bytes. Default 256 MiB.
	SubscriberBytesBudget int64
	// RunningWindow is how long a streamed event keeps a worker "running"
	// (agent_end ends it at once). Default 2s.
	RunningWindow time.Duration
	// RestartBackoff is the first delay before respawning a session whose
	// worker crashed; it doubles per consecutive crash up to
	// MaxRestartBackoff. Defaults 250ms and 30s.
	RestartBackoff    time.Duration
	MaxRestartBackoff time.Duration
	// ReapInterval is how often the reaper looks for idle workers (and
	// reaps orphans, prunes sessions). Default: IdleTTL/10 clamped to
	// [100ms, 5s]; 5s when reaping is off.
	ReapInterval time.Duration
	// DisableSubreaper leaves PR_SET_CHILD_SUBREAPER unset (Linux). With it
	// set (the default), orphaned grandchildren are re-parented to the
	// supervisor, which reaps them: zombie children outside the process's
	// own process group that are not this Manager's workers. Run one
	// Manager per process with it on, and set it when the embedding
	// program starts its own children in new process groups.
	DisableSubreaper bool

	// MemoryMax bounds each worker's whole process tree's memory, in
	// bytes (0 = no limit). See docs/limits.md for how it is enforced.
	MemoryMax int64
	// PidsMax bounds the processes (threads count, as the kernel counts
	// them) in each worker's tree (0 = no limit).
	PidsMax int64
	// CPUMax bounds each worker tree's CPU bandwidth, in cores (0 = no
	// limit). Only cgroups can enforce it.
	CPUMax float64
	// Cgroups says whether limits may use cgroups: CgroupsAuto (default),
	// CgroupsOff or CgroupsRequired (New fails when cgroups cannot
	// enforce every limit set).
	Cgroups CgroupMode
	// CgroupRoot is where cgroupfs is mounted. Default /sys/fs/cgroup.
	CgroupRoot string
	// WatchdogInterval is how often the supervisor measures worker trees
	// for limits that cgroups do not enforce, and reads cgroup limit
	// events. Default 1s. A tree over a limit on two consecutive passes
	// is stopped.
	WatchdogInterval time.Duration
	// RuntimeDir holds one lock file per live Manager, by which a later
	// Manager recognises the leftovers of one that died (SIGKILL) and
	// stops them. The binary passes systemd's $RUNTIME_DIRECTORY. Default:
	// $XDG_RUNTIME_DIR/workerscope, else
	// /run/workerscope when writable, else $TMPDIR/workerscope-UID.
	// "-" disables leftover recovery.
	RuntimeDir string

	// WorkerUIDs, when set, runs each worker tree as its own uid and gid
	// (gid = uid, no supplementary groups) from this range (tier 2 of
	// docs/security.md): a uid belongs to one live worker tree at a time and
	// is handed out again only after every process running as it is gone.
	// A spawn with every uid taken fails (sandbox.ErrUIDsExhausted, counted
	// in Stats.UIDsExhausted). New fails unless the process has
	// sandbox.IdentityCaps (root has), the range excludes the supervisor's
	// own uid and gid, and no live supervisor instance (by RuntimeDir) uses
	// an overlapping range. Needs SandboxHelper.
	WorkerUIDs sandbox.UIDRange
	// WorkerDirRoot holds one private directory per worker, named by its
	// ID, used when WorkerUIDs or the sandbox is on: mode 0700, owned by the
	// worker's uid, the worker's HOME and working directory, with its
	// TMPDIR in tmp/; removed with everything in it once the worker's tree
	// is gone. Default: $TMPDIR/workerscope-workers-EUID.
	WorkerDirRoot string
	// Sandbox confines each worker tree with Landlock (tier 3):
	// sandbox.ModeOff (the zero value), ModeAuto or ModeRequired. See
	// SandboxReadOnly for what a confined worker may touch. Needs
	// SandboxHelper.
	Sandbox sandbox.Mode
	// SandboxHelper is the argv that starts a binary whose main runs
	// sandbox.Main when sandbox.RoleEnv is set (cmd/workerscope: its own
	// executable); every isolated worker is started through it.
	SandboxHelper []string
	// SandboxReadOnly are trees a confined worker may read and execute
	// besides sandbox.DefaultReadOnly and its command's own installation
	// (sandbox.CommandTrees); SandboxReadWrite trees it may also write,
	// besides its own directory.
	SandboxReadOnly, SandboxReadWrite []string
	// AllowConnectPorts and AllowBindPorts are the TCP ports a confined
	// worker may connect to and bind (Landlock ABI 4+); all others are
	// refused.
	AllowConnectPorts, AllowBindPorts []uint16
	// DenyPorts must never be reachable from a confined worker (the
	// supervisor's own API port): New fails when an allow list names one.
	DenyPorts []uint16

	// OnRPC, if set, is called after every command with its outcome.
	OnRPC func(RPCResult)
	// Tracer, if set, follows every command routed to a worker (a span
	// per command: telemetry/oteltrace).
	Tracer CommandTracer
	// DisableCommandCost turns off the per-command cost reading (two
	// targeted reads of the worker's tree per command, see Cost). It is
	// on when OnRPC or Tracer is set, on Linux.
	DisableCommandCost bool
	// CostSampleInterval is how often a command that runs longer re-reads
	// its worker's tree for Cost.MemoryPeak and Cost.Processes. Default
	// 1s; negative reads at start and end only.
	CostSampleInterval time.Duration

	// RunCommands are the command types whose response may be followed
	// by a streamed run, as pi's prompt is (it answers once accepted,
	// then streams agent_start … agent_end): the command's span and cost
	// then cover the run (see Run and docs/traces-and-logs.md). Default
	// ["prompt"].
	RunCommands []string
	// RunStartWait is how long after such a command's response its run's
	// agent_start may come; without one, the command started no run.
	// Default 5s.
	RunStartWait time.Duration
	// MaxRunDuration bounds how long after a command's arrival its run is
	// followed; a run still going then is measured up to then
	// (RunEndMaxDuration). Default 1h; negative follows no runs (spans
	// end at the response).
	MaxRunDuration time.Duration
	// OnRun, if set, is called when a followed run ends, with the
	// command's result as given to OnRPC at its response plus Run.
	OnRun func(RPCResult)

	// OnStderr, if set, receives each line of every worker's stderr
	// (bounded to StderrLineBytes), at most StderrRate lines a second per
	// worker with bursts of StderrBurst; lines over the rate are dropped
	// and counted (Stats.StderrLinesDropped). ctx is the context of the
	// newest command in flight on the worker (with its span), else
	// context.Background(). It is called from the worker's stderr reader:
	// it must not block. The stderr tail kept for crash reports is
	// independent of it.
	OnStderr func(ctx context.Context, line StderrLine)
	// StderrLineBytes bounds one line handed to OnStderr; the rest of a
	// longer line is dropped. Default 8 KiB.
	StderrLineBytes int
	// StderrRate and StderrBurst are OnStderr's per-worker token bucket.
	// Defaults 100 lines/s and 200 lines.
	StderrRate  float64
	StderrBurst int
	// OnLifecycle, if set, receives every lifecycle event (worker_start,
	// worker_exit, worker_limit, budget_exceeded) as it is published to
	// the session's subscribers. It must not block.
	OnLifecycle func(Lifecycle)
	// Logger receives lifecycle logs. Default slog.Default().
	Logger *slog.Logger

	// OnModelCall and OnToolCall, if set, receive each model call and
	// tool call of the agent runs the workers stream (pi's message_* and
	// tool_execution_* events; see agent.go), when it ends, from the
	// worker's read goroutine: they must not block.
	OnModelCall func(ModelCall)
	OnToolCall  func(ToolCall)
	// CaptureAgentContent keeps model output, tool arguments and results
	// in ModelCall.Content, ToolCall.Args and ToolCall.Result (off: they
	// are never read).
	CaptureAgentContent bool
	// SessionTokenBudget and SessionSpendBudgetUSD bound each session's
	// model usage, in tokens (pi's totalTokens) and US dollars (pi's
	// usage.cost.total), summed over its runs (0 = no budget). A session
	// that goes past one gets its run aborted (pi's abort command), a
	// budget_exceeded event, and its run commands refused with
	// ErrBudgetExceeded until Stop resets it.
	SessionTokenBudget    int64
	SessionSpendBudgetUSD float64
}

// RPCResult describes one finished command, for metrics and spans.
type RPCResult struct {
	Key  string
	Type string // the command's "type"; "" when the command was not parsed
	// ErrorType is "" on success, CodeWorkerError when the worker answered
	// success:false, else ErrorCode of Send's error.
	ErrorType string
	// Duration is from the command's arrival (Start) to its response.
	Duration time.Duration
	Start    time.Time
	// Run is the streamed run that followed the response (see
	// Config.RunCommands): set for CommandSpan.End and OnRun when the
	// command started one, nil otherwise and always for OnRPC.
	Run *Run
	// Err is Send's error (nil on success and on CodeWorkerError).
	Err error
	// WorkerID and PID name the worker that ran the command ("" and 0 when
	// none was acquired).
	WorkerID string
	PID      int
	// Cost is what the command cost the worker's tree; nil when not
	// measured (no worker, not Linux, DisableCommandCost, or the worker
	// could not be read at the start or the end).
	Cost *Cost
	// Events counts the events the worker streamed while the command was
	// in flight.
	Events int
	// Context is the command's context as Send ran it (with the span
	// Tracer put in it): metrics record with it so that exemplars link to
	// the span. Valid during the callback only.
	Context context.Context
}

func (c *Config) setDefaults() {
	if c.IdleTTL == 0 {
		c.IdleTTL = 10 * time.Minute
	}
	if c.MaxWorkers == 0 {
		c.MaxWorkers = 64
	}
	if c.StopGrace == 0 {
		c.StopGrace = 5 * time.Second
	}
	if c.MaxLineBytes == 0 {
		c.MaxLineBytes = 16 << 20
	}
	if c.MaxCommandBytes == 0 {
		c.MaxCommandBytes = 16 << 20
	}
	if c.StderrTailBytes == 0 {
		c.StderrTailBytes = 4 << 10
	}
	if c.EventBuffer == 0 {
		c.EventBuffer = 256
	}
	if c.SubscriberBufferBytes == 0 {
		c.SubscriberBufferBytes = DefaultSubscriberBufferBytes
	}
	if c.SubscriberBytesBudget == 0 {
		c.SubscriberBytesBudget = DefaultSubscriberBytesBudget
	}
	if c.RunningWindow == 0 {
		c.RunningWindow = 2 * time.Second
	}
	if c.RestartBackoff == 0 {
		c.RestartBackoff = 250 * time.Millisecond
	}
	if c.MaxRestartBackoff == 0 {
		c.MaxRestartBackoff = 30 * time.Second
	}
	if c.ReapInterval == 0 {
		// A tenth of the TTL; with reaping off (IdleTTL < 0) the reaper
		// still reaps orphans and prunes sessions, every 5 s.
		c.ReapInterval = 5 * time.Second
		if c.IdleTTL > 0 {
			c.ReapInterval = min(max(c.IdleTTL/10, 100*time.Millisecond), 5*time.Second)
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.CostSampleInterval == 0 {
		c.CostSampleInterval = time.Second
	}
	if c.RunCommands == nil {
		c.RunCommands = []string{"prompt"}
	}
	if c.RunStartWait == 0 {
		c.RunStartWait = 5 * time.Second
	}
	if c.MaxRunDuration == 0 {
		c.MaxRunDuration = defaultMaxRunDuration
	}
	if c.StderrLineBytes == 0 {
		c.StderrLineBytes = 8 << 10
	}
	if c.StderrRate == 0 {
		c.StderrRate = 100
	}
	if c.StderrBurst == 0 {
		c.StderrBurst = 200
	}
	c.setLimitDefaults()
}

// ConfigError is one invalid Config field, as New and Config.Validate
// report them (joined: match with errors.As on each).
type ConfigError struct {
	// Field is the Config field's name, e.g. "MemoryMax".
	Field string
	Err   error
}

func (e *ConfigError) Error() string { return "workers: " + e.Field + ": " + e.Err.Error() }

// Unwrap returns the reason.
func (e *ConfigError) Unwrap() error { return e.Err }

func fieldErr(field, format string, args ...any) error {
	return &ConfigError{Field: field, Err: fmt.Errorf(format, args...)}
}

// Validate reports every invalid field of c as New would (with the
// defaults filled in), each a *ConfigError, joined; nil when New would
// accept c (New can still fail on what only starting shows: cgroups,
// Landlock, uids in use).
func (c Config) Validate() error {
	c.setDefaults()
	return c.validate()
}

func (c *Config) validate() error {
	var errs []error
	if len(c.Command) == 0 || c.Command[0] == "" {
		errs = append(errs, fieldErr("Command", "is empty"))
	}
	if c.MaxWorkers < 1 {
		errs = append(errs, fieldErr("MaxWorkers", "must be ≥ 1, got %d", c.MaxWorkers))
	}
	if c.MaxLineBytes < 1<<10 {
		errs = append(errs, fieldErr("MaxLineBytes", "must be ≥ 1024, got %d", c.MaxLineBytes))
	}
	if c.EventBuffer < 1 {
		errs = append(errs, fieldErr("EventBuffer", "must be ≥ 1, got %d", c.EventBuffer))
	}
	for name, v := range map[string]int64{"SubscriberBufferBytes": c.SubscriberBufferBytes, "SubscriberBytesBudget": c.SubscriberBytesBudget} {
		if v < 1<<10 {
			errs = append(errs, fieldErr(name, "must be ≥ 1024, got %d", v))
		}
	}
	if c.StderrRate < 0 {
		errs = append(errs, fieldErr("StderrRate", "must be > 0, got %g", c.StderrRate))
	}
	for name, v := range map[string]int{"MaxCommandBytes": c.MaxCommandBytes, "StderrTailBytes": c.StderrTailBytes,
		"StderrLineBytes": c.StderrLineBytes, "StderrBurst": c.StderrBurst} {
		if v < 1 {
			errs = append(errs, fieldErr(name, "must be ≥ 1, got %d", v))
		}
	}
	for name, d := range map[string]time.Duration{"RunningWindow": c.RunningWindow, "RestartBackoff": c.RestartBackoff,
		"MaxRestartBackoff": c.MaxRestartBackoff, "ReapInterval": c.ReapInterval, "RunStartWait": c.RunStartWait} {
		if d <= 0 {
			errs = append(errs, fieldErr(name, "must be > 0, got %s", d))
		}
	}
	if c.SessionTokenBudget < 0 || !(c.SessionSpendBudgetUSD >= 0) {
		errs = append(errs, fieldErr("SessionTokenBudget", "SessionTokenBudget and SessionSpendBudgetUSD must be ≥ 0, got %d and %g", c.SessionTokenBudget, c.SessionSpendBudgetUSD))
	}
	errs = append(errs, c.validateLimits()...)
	errs = append(errs, c.validateIsolation()...)
	return errors.Join(errs...)
}
