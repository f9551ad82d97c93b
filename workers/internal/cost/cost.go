// Package cost is the bookkeeping of what an interval (a command, its
// run, a tool call) cost a worker's process tree: readings of the tree at
// its start, in between and at its end (Sample, taken by the caller from
// /proc or from the worker's cgroup) folded into CPU time, memory peak and
// processes started (Meter).
//
// It imports only the standard library and knows nothing of workers.
package cost

import (
	"slices"
	"time"
)

// ClockTicks is USER_HZ, the unit of /proc's CPU times (100 on every
// Linux architecture Go supports).
const ClockTicks = 100

// Sample is one reading of a tree: from /proc (a walk of the tree) or from
// the worker's cgroup files. The two kinds measure CPU at different
// granularities (clock ticks, microseconds), so a Meter compares only
// readings of the kind it began with.
type Sample struct {
	// CPUUser and CPUSystem are the tree's cumulative CPU time: from
	// /proc, its processes' own time plus their reaped children's
	// (utime+cutime, stime+cstime); from a cgroup, everything charged to
	// the group.
	CPUUser, CPUSystem time.Duration
	// RSS is the tree's memory in bytes: resident set sizes summed over
	// its processes, or its cgroup's working set (the charge less
	// inactive file cache) when it has a memory controller.
	RSS int64
	// Members are (pid, start time) of each process read; the start time
	// is 0 when the reading came from the cgroup's membership list.
	Members [][2]uint64
	// Cgroup is true when the reading came from the worker's cgroup.
	Cgroup bool
}

// Meter folds the readings of one interval. It is not safe for
// concurrent use.
type Meter struct {
	started bool
	first   Sample
	user    time.Duration // the latest reading's (lastOK)
	sys     time.Duration
	lastOK  bool
	peak    int64
	seen    [][2]uint64 // processes seen after the start
}

// Begin takes the start reading; the Meter keeps s.Members.
func (m *Meter) Begin(s Sample) {
	m.first, m.started, m.peak = s, true, s.RSS
}

// Started reports whether Begin was called.
func (m *Meter) Started() bool { return m.started }

// Observe folds a later reading into the peak and the processes seen, and
// keeps its CPU times as the latest. A reading of the other kind than the
// start's (cgroup or /proc) is ignored.
func (m *Meter) Observe(s *Sample) {
	if !m.started || s.Cgroup != m.first.Cgroup {
		return
	}
	m.user, m.sys, m.lastOK = s.CPUUser, s.CPUSystem, true
	m.peak = max(m.peak, s.RSS)
	for _, id := range s.Members {
		if !slices.Contains(m.first.Members, id) && !slices.Contains(m.seen, id) {
			m.seen = append(m.seen, id)
		}
	}
}

// Delta is what the tree used between the first reading and the last.
type Delta struct {
	CPUUser, CPUSystem time.Duration
	MemoryPeak         int64
	Processes          int
}

// Delta is the cost from the start to the latest reading; false without
// both.
func (m *Meter) Delta() (Delta, bool) {
	if !m.started || !m.lastOK {
		return Delta{}, false
	}
	return Delta{
		CPUUser:    Since(m.user, m.first.CPUUser),
		CPUSystem:  Since(m.sys, m.first.CPUSystem),
		MemoryPeak: m.peak,
		Processes:  len(m.seen),
	}, true
}

// Ticks converts /proc clock ticks to a duration.
func Ticks(t uint64) time.Duration { return time.Duration(t) * (time.Second / ClockTicks) }

// Since is end − start; a tree that lost a process between the readings
// (reaped outside it) never reports less than nothing.
func Since(end, start time.Duration) time.Duration { return max(end-start, 0) }
