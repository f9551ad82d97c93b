package sampler

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/shirou/gopsutil/v4/process"

	"github.com/workerscope/workerscope/workers"
)

// gopsutilSampler is the portable ProcessSampler, the default where there
// is no /proc (it builds everywhere, so Linux tests can run it too): it
// walks each worker's tree with gopsutil, reusing Process handles between
// passes. It is far slower than the Linux reader and cannot attribute
// descendants that were re-parented away, nor keep the CPU of exited
// descendants (the OS reports no per-process reaped-children time here).
type gopsutilSampler struct {
	handles map[int32]*process.Process
	last    map[string][2]float64
}

// NewGopsutilSampler returns the portable sampler. Measurements the OS
// does not give (page faults on macOS, fds of another user's process) are
// named in TreeStat.Partial rather than reported as zero.
func NewGopsutilSampler() ProcessSampler {
	return &gopsutilSampler{handles: map[int32]*process.Process{}, last: map[string][2]float64{}}
}

func (g *gopsutilSampler) handle(pid int32) (*process.Process, error) {
	if p, ok := g.handles[pid]; ok {
		return p, nil
	}
	p, err := process.NewProcess(pid)
	if err != nil {
		return nil, err
	}
	g.handles[pid] = p
	return p, nil
}

func (g *gopsutilSampler) SampleTrees(ws []workers.WorkerSnapshot, out []TreeStat) error {
	seen := map[int32]bool{}
	ids := map[string]bool{}
	for k, w := range ws {
		ids[w.ID] = true
		root, err := g.handle(int32(w.PID))
		if err != nil {
			out[k].Err = fmt.Errorf("worker process %d: %w", w.PID, err)
			continue
		}
		st := &out[k]
		var user, sys float64
		var missing []string // measurements this OS (or permission) did not give
		miss := func(what string, err error) {
			if err != nil && !slices.Contains(missing, what) {
				missing = append(missing, what)
			}
		}
		queue := []*process.Process{root}
		for len(queue) > 0 {
			p := queue[0]
			queue = queue[1:]
			seen[p.Pid] = true
			st.Processes++
			t, err := p.Times()
			if err == nil {
				user += t.User
				sys += t.System
			}
			miss("cpu", err)
			m, err := p.MemoryInfo()
			if err == nil {
				st.RSSBytes += int64(m.RSS)
				st.VMSBytes += int64(m.VMS)
			}
			miss("memory", err)
			f, err := p.PageFaults()
			if err == nil {
				st.MinorFaults += f.MinorFaults + f.ChildMinorFaults
				st.MajorFaults += f.MajorFaults + f.ChildMajorFaults
			}
			miss("page faults", err)
			n, err := p.NumThreads()
			if err == nil {
				st.Threads += int(n)
			}
			miss("threads", err)
			nfd, err := p.NumFDs()
			if err == nil {
				st.FDs += int(nfd)
			}
			miss("fds", err)
			if s, err := p.Status(); err == nil && len(s) > 0 && s[0] == process.Zombie {
				st.Defunct++
			}
			if kids, err := p.Children(); err == nil {
				queue = append(queue, kids...)
			}
		}
		if len(missing) > 0 {
			// Reported as missing (the JSON's "error"), not as a true zero.
			st.Partial = fmt.Errorf("not measured here: %s", strings.Join(missing, ", "))
		}
		prev := g.last[w.ID]
		user, sys = max(user, prev[0]), max(sys, prev[1])
		g.last[w.ID] = [2]float64{user, sys}
		st.CPUUser, st.CPUSystem = user, sys
	}
	for pid := range g.handles {
		if !seen[pid] {
			delete(g.handles, pid)
		}
	}
	for id := range g.last {
		if !ids[id] {
			delete(g.last, id)
		}
	}
	return nil
}

// SampleSelf measures the supervisor process alone.
func (g *gopsutilSampler) SampleSelf(out *TreeStat) {
	p, err := process.NewProcess(int32(os.Getpid()))
	if err != nil {
		*out = TreeStat{Err: fmt.Errorf("own process: %w", err)}
		return
	}
	*out = TreeStat{Processes: 1}
	if t, err := p.Times(); err == nil {
		out.CPUUser, out.CPUSystem = t.User, t.System
	} else {
		out.Partial = err
	}
	if m, err := p.MemoryInfo(); err == nil {
		out.RSSBytes, out.VMSBytes = int64(m.RSS), int64(m.VMS)
	}
	if n, err := p.NumThreads(); err == nil {
		out.Threads = int(n)
	}
	if n, err := p.NumFDs(); err == nil {
		out.FDs = int(n)
	}
}
