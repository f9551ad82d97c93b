//go:build linux

package sampler

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"syscall"
	"time"

	"github.com/workerscope/workerscope/internal/procfs"
	"github.com/workerscope/workerscope/workers"
)

// procTreeSampler measures workers' process trees straight from /proc: one
// pass reads /proc/PID/stat once per process on the host (the attribution
// needs every ppid), then one fstatat of /proc/PID/fd per process of a
// worker's tree. Descendants re-parented away from a worker are attributed
// by the inherited workers.MarkerEnv, read once per process lifetime.
//
// CPU and page faults are kept true across process exits: a tree's counter is the sum of its
// live processes' own and reaped-children times plus the last seen time of
// members that disappeared without a tree member to inherit their time
// (reaped by init or by the supervisor as subreaper). It never decreases.
type procTreeSampler struct {
	sc       *procfs.Scanner
	pageSize int64
	roots    []procfs.Root
	trees    [][]int
	acct     map[string]*treeAcct
	gen      uint64
	members  MemberSource  // exact membership of workers with a cgroup, or nil
	usage    UsageSource   // cgroup figures of workers with a cgroup, or nil
	usages   []cgroupUsage // this pass's, per worker
}

// cgroupUsage is one worker's cgroup figures in a pass; ok is false when
// it has none.
type cgroupUsage struct {
	workers.CgroupUsage
	ok bool
}

func (p *procTreeSampler) setMembers(ms MemberSource) { p.members = ms }
func (p *procTreeSampler) setUsage(us UsageSource)    { p.usage = us }

type procID struct {
	pid   int
	start uint64
}

// Indexes of the cumulative counters a tree keeps across process exits.
const (
	cUser   = iota // CPU ticks in user mode (own + reaped children)
	cSys           // CPU ticks in system mode
	cMinFlt        // minor page faults
	cMajFlt        // major page faults
	numCounters
)

// counters are cumulative per-process values that move from a child into
// its parent's c* fields when the parent reaps it.
type counters [numCounters]uint64

func (c *counters) add(o counters) {
	for i := range c {
		c[i] += o[i]
	}
}

// statCounters is p's own plus reaped-children counters.
func statCounters(p *procfs.Stat) counters {
	return counters{
		cUser:   p.UTime + p.CUTime,
		cSys:    p.STime + p.CSTime,
		cMinFlt: p.MinFlt + p.CMinFlt,
		cMajFlt: p.MajFlt + p.CMajFlt,
	}
}

// procAcct is the last seen counters of one process in a tree.
type procAcct struct {
	c    counters
	ppid int
	gen  uint64
}

type treeAcct struct {
	procs map[procID]procAcct
	gone  counters // of members whose values left the tree's live processes
	last  counters // last reported, for monotonicity
	gen   uint64
	// cgroup: the worker's CPU comes from its cgroup (its first pass
	// decides, for the worker's life: the two sources differ in
	// granularity, and a counter must not step between them); cgUser and
	// cgSys are the last reported.
	cgroup        bool
	cgUser, cgSys time.Duration
	passes        int // passes that measured the tree
}

// NewProcessSampler returns the platform's ProcessSampler: a direct /proc
// reader on Linux.
func NewProcessSampler() (ProcessSampler, error) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		return nil, fmt.Errorf("sampler: /proc is not available: %w", err)
	}
	return newProcTreeSampler(""), nil
}

// newProcTreeSampler reads the proc file system at root ("" = /proc);
// tests pass a fixture directory.
func newProcTreeSampler(root string) *procTreeSampler {
	sc := procfs.NewScanner(root, workers.MarkerEnv)
	// Processes outside every worker's tree are read once and then only
	// every 30th pass (or when their /proc entry changes): on a host with
	// many unrelated processes a pass costs little more than the trees.
	sc.SkipForeign, sc.RecheckEvery = true, 30
	// A tree member's stat file stays open between passes: one pread a
	// pass instead of open, read and close (≈ 2.5× cheaper per process).
	sc.KeepOpen = keepOpenBudget()
	return &procTreeSampler{
		sc:       sc,
		pageSize: int64(os.Getpagesize()),
		acct:     make(map[string]*treeAcct),
	}
}

// keepOpenBudget is how many stat files the sampler keeps open: a quarter
// of the soft RLIMIT_NOFILE (Go raises it to the hard limit at start-up),
// at most 16384, so the workers' pipes and the API's connections keep
// most of the descriptors.
func keepOpenBudget() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return int(min(rl.Cur/4, 16384))
}

// Close closes the stat files kept open between passes.
func (p *procTreeSampler) Close() error {
	p.sc.Close()
	return nil
}

var errNoProcess = errors.New("worker process not found in /proc")

func (p *procTreeSampler) SampleTrees(ws []workers.WorkerSnapshot, out []TreeStat) error {
	if err := p.sc.Scan(); err != nil {
		return err
	}
	p.gen++
	p.roots = p.roots[:0]
	var minStart uint64
	for i, w := range ws {
		p.roots = append(p.roots, procfs.Root{PID: w.PID, StartTime: w.StartTicks, Marker: w.ID})
		if i == 0 || w.StartTicks < minStart {
			minStart = w.StartTicks
		}
	}
	p.trees = p.sc.Attribute(p.roots, minStart, p.trees)
	p.addCgroupMembers(ws)
	procs := p.sc.Procs()
	r := p.sc.Reader()
	for k, w := range ws {
		tree := p.trees[k]
		acct := p.acct[w.ID]
		if acct == nil {
			acct = &treeAcct{procs: make(map[procID]procAcct)}
			p.acct[w.ID] = acct
		}
		acct.gen = p.gen
		if len(tree) == 0 || procs[tree[0]].PID != w.PID {
			out[k] = TreeStat{Err: fmt.Errorf("%w (pid %d)", errNoProcess, w.PID)}
			continue
		}
		acct.passes++
		st := &out[k]
		var live counters
		var fdErr error
		for _, i := range tree {
			pr := &procs[i]
			c := statCounters(pr)
			live.add(c)
			acct.procs[procID{pr.PID, pr.StartTime}] = procAcct{c: c, ppid: pr.PPID, gen: p.gen}
			st.Processes++
			if pr.State == 'Z' {
				st.Defunct++
				continue
			}
			st.RSSBytes += pr.RSS * p.pageSize
			st.VMSBytes += int64(pr.VSize)
			st.Threads += int(pr.NumThreads)
			n, err := r.CountFDs(pr.PID)
			if err != nil {
				if fdErr == nil {
					fdErr = err
				}
				continue
			}
			st.FDs += n
		}
		// Members gone since the last pass: their counts stay in the tree
		// only if a live member (their parent) reaped them.
		for id, pa := range acct.procs {
			if pa.gen == p.gen {
				continue
			}
			if parent := p.sc.Lookup(pa.ppid); parent < 0 || p.sc.Owner(parent) != k {
				acct.gone.add(pa.c)
			}
			delete(acct.procs, id)
		}
		total := acct.gone
		total.add(live)
		for i := range total {
			total[i] = max(total[i], acct.last[i])
		}
		acct.last = total
		st.CPUUser = float64(total[cUser]) / procfs.ClockTicks
		st.CPUSystem = float64(total[cSys]) / procfs.ClockTicks
		st.MinorFaults, st.MajorFaults = total[cMinFlt], total[cMajFlt]
		if fdErr != nil {
			st.Partial = fmt.Errorf("fds: %w", fdErr)
		}
		p.cgroupFigures(k, &ws[k], acct, st)
	}
	for id, a := range p.acct {
		if a.gen != p.gen {
			delete(p.acct, id)
		}
	}
	return nil
}

// cgroupFigures replaces the figures the worker's cgroup files give (CPU,
// memory, tasks) with theirs. A worker whose first pass had the cgroup's
// CPU keeps it for life; if a later read fails, its last value stands
// (never the /proc one: the counter must not step between sources).
func (p *procTreeSampler) cgroupFigures(k int, w *workers.WorkerSnapshot, acct *treeAcct, st *TreeStat) {
	if p.usage == nil || w.Cgroup == "" {
		return
	}
	u, ok := p.usages[k].CgroupUsage, p.usages[k].ok
	if ok && u.HasCPU && (acct.cgroup || acct.passes == 1) {
		acct.cgroup = true
		acct.cgUser, acct.cgSys = max(acct.cgUser, u.CPUUser), max(acct.cgSys, u.CPUSystem)
	}
	if acct.cgroup {
		st.CPUUser, st.CPUSystem = acct.cgUser.Seconds(), acct.cgSys.Seconds()
		st.FromCgroup.CPU = true
	}
	if !ok {
		return
	}
	if u.HasMemory {
		st.RSSBytes, st.FromCgroup.Memory = u.MemoryBytes, true
	}
	if u.HasTasks {
		st.Threads, st.FromCgroup.Tasks = int(u.Tasks), true
	}
}

// addCgroupMembers adds to each tree the processes of the worker's cgroup
// that neither ancestry nor the marker attributed to any worker: a
// descendant that scrubbed its environment and was re-parented away. It
// first reads the worker's cgroup figures into p.usages: when the group
// counts as many tasks (pids.current) as the walk found, nothing escaped
// it and the membership list is not read.
func (p *procTreeSampler) addCgroupMembers(ws []workers.WorkerSnapshot) {
	p.usages = slices.Grow(p.usages[:0], len(ws))[:len(ws)]
	clear(p.usages)
	procs := p.sc.Procs()
	for k, w := range ws {
		if w.Cgroup == "" || len(p.trees[k]) == 0 {
			continue
		}
		u := &p.usages[k]
		if p.usage != nil {
			u.ok = p.usage.WorkerCgroupUsage(w.ID, &u.CgroupUsage)
		}
		if p.members == nil {
			continue
		}
		if u.ok && u.HasTasks {
			var tasks int64
			for _, i := range p.trees[k] {
				if procs[i].State == 'Z' {
					tasks++ // holds its task until reaped, as pids.current counts it
				} else {
					tasks += procs[i].NumThreads
				}
			}
			if tasks == u.Tasks {
				continue // the walk has every task the group holds
			}
		}
		pids, ok := p.members.WorkerPIDs(w.ID)
		if !ok {
			continue
		}
		for _, pid := range pids {
			if i := p.sc.Lookup(pid); i >= 0 && p.sc.Owner(i) < 0 && !slices.Contains(p.trees[k], i) {
				p.trees[k] = append(p.trees[k], i)
			}
		}
	}
}

// SampleSelf measures the supervisor process alone: its own CPU time (not
// its reaped children's: those are workers, measured per tree), memory,
// threads and fds.
func (p *procTreeSampler) SampleSelf(out *TreeStat) {
	r := p.sc.Reader()
	pid := os.Getpid()
	st, err := r.ReadStat(pid)
	if err != nil {
		*out = TreeStat{Err: fmt.Errorf("own /proc/%d/stat: %w", pid, err)}
		return
	}
	*out = TreeStat{
		CPUUser:   float64(st.UTime) / procfs.ClockTicks,
		CPUSystem: float64(st.STime) / procfs.ClockTicks,
		RSSBytes:  st.RSS * p.pageSize, VMSBytes: int64(st.VSize),
		Threads: int(st.NumThreads), Processes: 1,
		MinorFaults: st.MinFlt, MajorFaults: st.MajFlt,
	}
	if n, err := r.CountFDs(pid); err == nil {
		out.FDs = n
	} else {
		out.Partial = fmt.Errorf("fds: %w", err)
	}
}

// cacheSizes reports the sampler's internal cache sizes (for leak checks).
func (p *procTreeSampler) cacheSizes() (trees, procs, env int) {
	for _, a := range p.acct {
		procs += len(a.procs)
	}
	return len(p.acct), procs, p.sc.EnvCacheLen()
}
