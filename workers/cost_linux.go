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

// readTree reads w's tree: the worker, its descendants by ancestry
// (/proc/PID/task/*/children, zombies included, so a child that exited but
// is not yet reaped still counts), and the members of its cgroup when it
// has one (re-parented descendants). It reads only those processes, never
// all of /proc. It returns false when the worker itself could not be read.
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
	page := int64(os.Getpagesize())
	add := func(st procfs.Stat) {
		out.UTime += st.UTime + st.CUTime
		out.STime += st.STime + st.CSTime
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
