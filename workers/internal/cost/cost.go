// Package cost is the bookkeeping of what an interval (a command, its
// run, a tool call) cost a worker's process tree: readings of the tree at
// its start, in between and at its end (Sample, taken by the caller from
// /proc) folded into CPU time, memory peak and processes started (Meter).
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

// Sample is one reading of a tree.
type Sample struct {
	// UTime and STime sum, over the tree's processes, their own time plus
	// their reaped children's (cutime, cstime), in clock ticks.
	UTime, STime uint64
	RSS          int64       // bytes
	Members      [][2]uint64 // (pid, start time) of each process read
}

// Delta is what the tree used between the first reading and the last.
type Delta struct {
	CPUUser, CPUSystem time.Duration
	MemoryPeak         int64
	Processes          int
}

// Meter folds the readings of one interval. It is not safe for
// concurrent use.
type Meter struct {
	started bool
	first   Sample
	utime   uint64 // the latest reading's (lastOK)
	stime   uint64
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
// keeps its CPU times as the latest.
func (m *Meter) Observe(s *Sample) {
	if !m.started {
		return
	}
	m.utime, m.stime, m.lastOK = s.UTime, s.STime, true
	m.peak = max(m.peak, s.RSS)
	for _, id := range s.Members {
		if !slices.Contains(m.first.Members, id) && !slices.Contains(m.seen, id) {
			m.seen = append(m.seen, id)
		}
	}
}

// Delta is the cost from the start to the latest reading; false without
// both.
func (m *Meter) Delta() (Delta, bool) {
	if !m.started || !m.lastOK {
		return Delta{}, false
	}
	return Delta{
		CPUUser:    Ticks(m.utime, m.first.UTime),
		CPUSystem:  Ticks(m.stime, m.first.STime),
		MemoryPeak: m.peak,
		Processes:  len(m.seen),
	}, true
}

// Ticks converts a clock-tick difference to a duration; a tree that lost
// a process between the readings (reaped outside it) never reports less
// than nothing.
func Ticks(end, start uint64) time.Duration {
	if end <= start {
		return 0
	}
	return time.Duration(end-start) * (time.Second / ClockTicks)
}
