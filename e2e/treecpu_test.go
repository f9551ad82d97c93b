//go:build linux

package e2e

import (
	"bytes"
	"os"
	"strconv"
	"testing"
	"time"
)

// The truth a measured CPU cost is compared with: the worker's tree read
// from /proc by the test itself, before and after. (internal/testutil has
// the same reader; e2e keeps its own, importing nothing of the project but
// the metric contract.)

// cpuTick is one USER_HZ clock tick, the unit of /proc/PID/stat's CPU
// fields.
const cpuTick = 10 * time.Millisecond

// procCPU is one reading: utime+stime+cutime+cstime summed over a process
// and its live descendants (by parent PID, zombies included), and how many
// processes that was.
type procCPU struct {
	total     time.Duration
	processes int
}

// sub is the CPU used between before and c.
func (c procCPU) sub(before procCPU) procCPU {
	return procCPU{total: c.total - before.total, processes: max(c.processes, before.processes)}
}

// slack bounds how far a measurement from /proc readings at a window's
// start and end can be from the test's own readings of the same window:
// four CPU fields per process, each truncated to a tick in both.
func (c procCPU) slack() time.Duration { return time.Duration(2*4*max(c.processes, 1)) * cpuTick }

func readTreeCPU(t testing.TB, root int) procCPU {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	ppid, cpu := map[int]int{}, map[int]time.Duration{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		i := bytes.LastIndexByte(b, ')')
		f := bytes.Fields(b[i+1:]) // f[0] state (field 3), f[1] ppid, f[11..14] utime stime cutime cstime
		if i < 0 || len(f) < 15 {
			t.Fatalf("/proc/%d/stat: %q", pid, b)
		}
		ppid[pid], _ = strconv.Atoi(string(f[1]))
		for _, v := range f[11:15] {
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil {
				t.Fatalf("/proc/%d/stat: %v", pid, err)
			}
			cpu[pid] += time.Duration(n) * cpuTick
		}
	}
	if _, ok := ppid[root]; !ok {
		t.Fatalf("process %d not in /proc", root)
	}
	in := map[int]bool{root: true}
	for grew := true; grew; {
		grew = false
		for pid, pp := range ppid {
			if !in[pid] && in[pp] {
				in[pid], grew = true, true
			}
		}
	}
	var c procCPU
	for pid := range in {
		c.total += cpu[pid]
		c.processes++
	}
	return c
}

// near reports whether a measured CPU time in seconds is within the
// readings' slack (plus what the idle tree may use around the measured
// window) of the truth.
func near(got float64, truth procCPU) bool {
	const outside = 10 * time.Millisecond
	tol := (truth.slack() + outside).Seconds()
	return got > 0 && got >= truth.total.Seconds()-tol && got <= truth.total.Seconds()+tol
}
