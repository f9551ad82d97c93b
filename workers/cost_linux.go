//go:build linux

package workers

import (
	"os"
	"slices"

	"github.com/workerscope/workerscope/internal/procfs"
	"github.com/workerscope/workerscope/workers/internal/cost"
)

// treeReader is the state of one targeted tree reading; pooled, since a
// procfs.Reader is not safe for concurrent use.
type treeReader struct {
	r     *procfs.Reader
	queue []int
	pids  []int
}

func (p *platform) canReadTrees() bool { return true }

// readTree reads w's tree. With a cgroup, from the group's files
// (readCgroupTree). Else by walking /proc: the worker, its descendants by
// ancestry (/proc/PID/task/*/children, zombies included, so a child that
// exited but is not yet reaped still counts), and the members of its
// cgroup when it has one (re-parented descendants). It reads only those
// processes, never all of /proc. It returns false when the worker itself
// could not be read.
func (p *platform) readTree(w *worker, out *cost.Sample) bool {
	select {
	case <-w.procExited:
		return false // reaped: its pid may be reused
	default:
	}
	tr, _ := p.trees.Get().(*treeReader)
	if tr == nil {
		tr = &treeReader{r: procfs.NewReader("")}
	}
	defer p.trees.Put(tr)
	*out = cost.Sample{Members: out.Members[:0]}
	if p.readCgroupTree(w, tr, out) {
		return true
	}
	page := int64(os.Getpagesize())
	add := func(st procfs.Stat) {
		out.CPUUser += cost.Ticks(st.UTime + st.CUTime)
		out.CPUSystem += cost.Ticks(st.STime + st.CSTime)
		if st.State != 'Z' {
			out.RSS += st.RSS * page
		}
		out.Members = append(out.Members, [2]uint64{uint64(st.PID), st.StartTime})
	}
	root, err := tr.r.ReadStat(w.pid)
	if err != nil || (w.startTicks != 0 && root.StartTime != w.startTicks) {
		return false
	}
	add(root)
	tr.queue = append(tr.queue[:0], w.pid)
	for len(tr.queue) > 0 && len(out.Members) < maxTreeRead {
		pid := tr.queue[len(tr.queue)-1]
		tr.queue = tr.queue[:len(tr.queue)-1]
		tr.pids, _ = tr.r.Children(pid, tr.pids[:0])
		for _, c := range tr.pids {
			st, err := tr.r.ReadStat(c)
			if err != nil {
				continue
			}
			add(st)
			tr.queue = append(tr.queue, c)
		}
	}
	if w.cg != nil {
		pids, _ := w.cg.PIDs()
		for _, pid := range pids {
			if slices.ContainsFunc(out.Members, func(m [2]uint64) bool { return m[0] == uint64(pid) }) {
				continue
			}
			if st, err := tr.r.ReadStat(pid); err == nil {
				add(st)
			}
		}
	}
	return true
}

// maxTreeRead bounds one targeted reading (a fork bomb must not make a
// command's end slow).
const maxTreeRead = 4096

// readCgroupTree reads w's tree from its cgroup: CPU from cpu.stat (exact,
// in microseconds, exited and escaped descendants included), the members
// from cgroup.procs, and memory from the group's memory controller, or,
// without one, the members' resident sizes from /proc. Each file is kept
// open (one pread). It returns false when w has no cgroup CPU figure.
func (p *platform) readCgroupTree(w *worker, tr *treeReader, out *cost.Sample) bool {
	var u CgroupUsage
	if !p.cgroupUsage(w.cg, cgroupReadCPU|cgroupReadMemory, &u) || !u.HasCPU {
		return false
	}
	var err error
	if tr.pids, err = w.cg.meter.PIDs(tr.pids[:0]); err != nil {
		return false
	}
	out.Cgroup, out.CPUUser, out.CPUSystem = true, u.CPUUser, u.CPUSystem
	page := int64(os.Getpagesize())
	for _, pid := range tr.pids[:min(len(tr.pids), maxTreeRead)] {
		out.Members = append(out.Members, [2]uint64{uint64(pid), 0})
		if u.HasMemory {
			continue
		}
		if st, err := tr.r.ReadStat(pid); err == nil && st.State != 'Z' {
			out.RSS += st.RSS * page
		}
	}
	if u.HasMemory {
		out.RSS = u.MemoryBytes
	}
	return true
}
