package sampler

import (
	"context"
	"errors"
	"io"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/workerscope/workerscope/internal/proflabel"
	"github.com/workerscope/workerscope/workers"
)

// Source is what the sampler reads from the supervisor. *workers.Manager
// implements it.
type Source interface {
	Snapshot() []workers.WorkerSnapshot
}

// MemberSource gives a worker's exact process membership when the
// supervisor has it (a per-worker cgroup): ok is false otherwise.
// *workers.Manager implements it.
type MemberSource interface {
	WorkerPIDs(workerID string) (pids []int, ok bool)
}

// UsageSource gives what a worker's cgroup files say about its tree (CPU,
// memory, tasks) when it has a cgroup: false otherwise. The Linux sampler
// reports those figures from it instead of /proc. *workers.Manager
// implements it.
type UsageSource interface {
	WorkerCgroupUsage(workerID string, u *workers.CgroupUsage) bool
}

// TreeStat is one worker's process tree measured at one moment. CPU times
// are cumulative seconds that include descendants that already exited and
// never decrease for the same worker.
type TreeStat struct {
	CPUUser, CPUSystem float64
	RSSBytes, VMSBytes int64
	Threads, FDs       int
	Processes, Defunct int
	// MinorFaults and MajorFaults are cumulative page faults of the tree,
	// kept across exits like the CPU times.
	MinorFaults, MajorFaults uint64
	// FromCgroup says which figures came from the worker's cgroup files
	// instead of /proc (Linux, tiers cgroup2 and cgroup1): exact for the
	// whole tree, exited and escaped descendants included. Each figure has
	// one source for a worker's whole life.
	FromCgroup CgroupFigures
	// Err is set when the tree could not be measured (values are zero).
	Err error
	// Partial is set when some fields could not be read (e.g. fds of a
	// process of another user); the rest are valid.
	Partial error
}

// CgroupFigures says which of a TreeStat's figures came from the
// worker's cgroup.
type CgroupFigures struct {
	// CPU: CPUUser and CPUSystem are the group's cpu.stat (or cpuacct).
	CPU bool
	// Memory: RSSBytes is the group's working set (memory.current or
	// memory.usage_in_bytes less memory.stat's inactive file pages), not
	// a sum of resident sizes.
	Memory bool
	// Tasks: Threads is the group's pids.current (threads, and exited
	// ones not yet reaped, as pids.max counts them).
	Tasks bool
}

// Any reports whether any figure came from the cgroup.
func (c CgroupFigures) Any() bool { return c.CPU || c.Memory || c.Tasks }

// ProcessSampler measures the process trees of workers in one pass. out
// must have one entry per worker, in order. It returns an error only when
// nothing could be measured at all. Implementations need not be safe for
// concurrent use: the Sampler serializes passes.
type ProcessSampler interface {
	SampleTrees(ws []workers.WorkerSnapshot, out []TreeStat) error
	// SampleSelf measures the supervisor's own process (not a tree).
	SampleSelf(out *TreeStat)
}

// WorkerReport is one worker's identity, supervisor state and process-tree
// usage.
type WorkerReport struct {
	workers.WorkerSnapshot
	TreeStat
	// HasRate is false until two passes (or the worker's start and one
	// pass) frame a window.
	HasRate bool
	// CPUPercent is tree CPU over the window per core, like top (200 =
	// two cores busy).
	CPUPercent float64
	// CPUUtilUser and CPUUtilSystem are CPU over the window divided by
	// the CPUs available (0..1), per mode, as workerscope.worker.cpu.utilization.
	CPUUtilUser, CPUUtilSystem float64
	// Uptime is the time since the worker was spawned.
	Uptime time.Duration
}

// Report is one sampling pass over every worker.
type Report struct {
	SampledAt time.Time
	// Window is the time since the previous pass (0 on the first).
	Window time.Duration
	// Duration is how long the pass took.
	Duration time.Duration
	NumCPU   int
	Workers  []WorkerReport
	// Self is the supervisor process itself, measured in the same pass.
	Self TreeStat
	// Errors is the cumulative count of worker measurements that failed.
	Errors uint64
	// Err is set when the whole pass failed (Workers then carry only the
	// supervisor's view).
	Err error
}

// Options configures a Sampler.
type Options struct {
	// MinInterval: callers within this time of the last pass share its
	// Report instead of sampling again. Default 1s.
	MinInterval time.Duration
	// Process measures the trees; default: the platform's sampler (a
	// direct /proc reader on Linux, gopsutil elsewhere).
	Process ProcessSampler
	// OnPass, if set, is called after every pass (for metrics).
	OnPass func(d time.Duration, failed int)
	// Now is the clock (tests).
	Now func() time.Time
	// NumCPU is the CPUs utilization is relative to. Default
	// runtime.NumCPU() (the CPUs this process may run on).
	NumCPU int
}

type cpuPoint struct {
	at        time.Time
	user, sys float64
}

// Sampler produces Reports. One pass serves every concurrent caller: the
// OTel callback, the JSON API and the page share the latest Report while it
// is younger than MinInterval, and callers that arrive during a pass get
// the previous Report at once instead of starting another pass or queueing
// behind it (only the very first callers wait). It never sleeps to measure:
// CPU rates are deltas between passes.
type Sampler struct {
	src    Source
	ps     ProcessSampler
	opts   Options
	numCPU int

	sem    chan struct{} // one pass at a time
	cur    atomic.Pointer[Report]
	errors atomic.Uint64
	passes atomic.Uint64

	// guarded by sem
	prev    map[string]cpuPoint
	lastAt  time.Time
	scratch []TreeStat
}

// New returns a Sampler over src.
func New(src Source, opts Options) (*Sampler, error) {
	if src == nil {
		return nil, errors.New("sampler: nil Source")
	}
	if opts.MinInterval <= 0 {
		opts.MinInterval = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.NumCPU <= 0 {
		opts.NumCPU = runtime.NumCPU()
	}
	if opts.Process == nil {
		ps, err := NewProcessSampler()
		if err != nil {
			return nil, err
		}
		opts.Process = ps
	}
	// With per-worker cgroups, the tree sampler also counts members that
	// left both the ancestry and the marker behind (a double fork with a
	// scrubbed environment).
	if ms, ok := src.(MemberSource); ok {
		if ma, ok := opts.Process.(interface{ setMembers(MemberSource) }); ok {
			ma.setMembers(ms)
		}
	}
	// With per-worker cgroups, CPU, memory and tasks come from the
	// group's own files.
	if us, ok := src.(UsageSource); ok {
		if ua, ok := opts.Process.(interface{ setUsage(UsageSource) }); ok {
			ua.setUsage(us)
		}
	}
	return &Sampler{
		src:    src,
		ps:     opts.Process,
		opts:   opts,
		numCPU: opts.NumCPU,
		sem:    make(chan struct{}, 1),
		prev:   make(map[string]cpuPoint),
	}, nil
}

// Report returns a Report no older than MinInterval, sampling if needed.
// While another caller's pass is running it returns the previous Report at
// once instead of waiting; only when there is none yet does it wait for
// that pass, and if ctx ends first it returns nil.
func (s *Sampler) Report(ctx context.Context) *Report {
	if r := s.cur.Load(); r != nil && s.opts.Now().Sub(r.SampledAt) < s.opts.MinInterval {
		return r
	}
	select {
	case s.sem <- struct{}{}:
	default:
		// A pass is running. Answer from the previous report if there is
		// one (its SampledAt tells its age) rather than queue behind the
		// pass; only the very first callers wait.
		if r := s.cur.Load(); r != nil {
			return r
		}
		select {
		case s.sem <- struct{}{}:
		case <-ctx.Done():
			return s.cur.Load()
		}
	}
	defer func() { <-s.sem }()
	if r := s.cur.Load(); r != nil && s.opts.Now().Sub(r.SampledAt) < s.opts.MinInterval {
		return r // a pass finished while we waited
	}
	var r *Report
	proflabel.Do(ctx, proflabel.Sample, func(context.Context) { r = s.sample() })
	s.cur.Store(r)
	return r
}

// Close releases what the process sampler keeps open between passes (the
// Linux sampler's kept-open stat files), waiting for a pass in progress.
// The Sampler stays usable: a later pass opens them again.
func (s *Sampler) Close() error {
	s.sem <- struct{}{}
	defer func() { <-s.sem }()
	if c, ok := s.ps.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// Passes is the number of sampling passes so far.
func (s *Sampler) Passes() uint64 { return s.passes.Load() }

// Errors is the cumulative number of failed worker measurements.
func (s *Sampler) Errors() uint64 { return s.errors.Load() }

// CacheSizes are the sizes of the state a Sampler keeps between passes,
// all zero once no worker is left (checked by the churn test).
type CacheSizes struct {
	// Baselines are per-worker CPU points for rates.
	Baselines int
	// Trees, Procs and Env are the Linux tree sampler's per-worker
	// accounts, per-process accounts and cached markers (zero for other
	// ProcessSamplers).
	Trees, Procs, Env int
}

// CacheSizes reports the sizes of the kept state, waiting for a pass in
// progress.
func (s *Sampler) CacheSizes() CacheSizes {
	s.sem <- struct{}{}
	defer func() { <-s.sem }()
	c := CacheSizes{Baselines: len(s.prev)}
	if cs, ok := s.ps.(interface{ cacheSizes() (int, int, int) }); ok {
		c.Trees, c.Procs, c.Env = cs.cacheSizes()
	}
	return c
}

func (s *Sampler) sample() *Report {
	start := time.Now()
	ws := s.src.Snapshot()
	now := s.opts.Now()
	if cap(s.scratch) < len(ws) {
		s.scratch = make([]TreeStat, len(ws))
	}
	stats := s.scratch[:len(ws)]
	clear(stats)
	passErr := s.ps.SampleTrees(ws, stats)

	r := &Report{SampledAt: now, NumCPU: s.numCPU, Workers: make([]WorkerReport, len(ws)), Err: passErr}
	s.ps.SampleSelf(&r.Self)
	if !s.lastAt.IsZero() {
		r.Window = now.Sub(s.lastAt)
	}
	failed := 0
	seen := make(map[string]struct{}, len(ws))
	for i, w := range ws {
		wr := WorkerReport{WorkerSnapshot: w, TreeStat: stats[i], Uptime: max(now.Sub(w.StartedAt), 0)}
		if passErr != nil && wr.Err == nil {
			wr.Err = passErr
		}
		seen[w.ID] = struct{}{} // a failed pass keeps the worker's CPU baseline
		if wr.Err != nil {
			failed++
			r.Workers[i] = wr
			continue
		}
		base, ok := s.prev[w.ID]
		if !ok && !w.StartedAt.IsZero() && now.After(w.StartedAt) {
			base, ok = cpuPoint{at: w.StartedAt}, true // a new worker: its whole life is the window
		}
		if dt := now.Sub(base.at).Seconds(); ok && dt > 0 {
			du := max(wr.CPUUser-base.user, 0)
			ds := max(wr.CPUSystem-base.sys, 0)
			wr.HasRate = true
			wr.CPUPercent = (du + ds) / dt * 100
			wr.CPUUtilUser = du / dt / float64(s.numCPU)
			wr.CPUUtilSystem = ds / dt / float64(s.numCPU)
		}
		s.prev[w.ID] = cpuPoint{at: now, user: wr.CPUUser, sys: wr.CPUSystem}
		r.Workers[i] = wr
	}
	for id := range s.prev {
		if _, ok := seen[id]; !ok {
			delete(s.prev, id)
		}
	}
	s.lastAt = now
	r.Errors = s.errors.Add(uint64(failed))
	r.Duration = time.Since(start)
	s.passes.Add(1)
	if s.opts.OnPass != nil {
		s.opts.OnPass(r.Duration, failed)
	}
	return r
}
