package testutil

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// CPUTick is one USER_HZ clock tick, the unit of the CPU fields of
// /proc/PID/stat (USER_HZ is 100 on every Linux architecture Go supports).
const CPUTick = 10 * time.Millisecond

// TreeCPU is one reading of a process tree's CPU time, taken by the test
// itself straight from /proc/PID/stat: the truth a measurement is compared
// with. It parses the file on its own (not with internal/procfs) so a bug
// shared with the code under test cannot hide.
type TreeCPU struct {
	// Own is utime+stime of every process read; Reaped is their
	// cutime+cstime, the time of children they waited for.
	Own, Reaped time.Duration
	// Processes is how many processes were read (the root, its live
	// descendants, zombies included, and any extra PIDs given).
	Processes int
}

// Total is Own + Reaped: all the CPU the tree has used so far, live
// descendants and reaped ones alike.
func (c TreeCPU) Total() time.Duration { return c.Own + c.Reaped }

// Sub is the CPU the tree used between an earlier reading and c, with the
// larger of the two process counts (each process read adds to the error;
// see CPUSlack).
func (c TreeCPU) Sub(before TreeCPU) TreeCPU {
	return TreeCPU{Own: c.Own - before.Own, Reaped: c.Reaped - before.Reaped, Processes: max(c.Processes, before.Processes)}
}

// CPUSlack bounds how far two measurements of the same tree over the same
// window can differ when both come from /proc/PID/stat readings at its
// start and end: each of a process's four CPU fields (utime, stime, cutime,
// cstime) is truncated to a whole tick, so the difference of two readings
// of one field is off by less than one tick; four fields per process, and
// both the measurement and the truth have that error. It says nothing of
// work done outside the measured window: a test adds that itself.
func CPUSlack(processes int) time.Duration {
	return time.Duration(2*4*max(processes, 1)) * CPUTick
}

// ReadTreeCPU reads the CPU time of pid and of every live descendant of it
// (by parent PID across all of /proc, zombies included, since a zombie
// keeps its times until it is reaped), plus of the extra PIDs given (e.g.
// a descendant re-parented away). It fails the test when pid itself
// cannot be read.
func ReadTreeCPU(t testing.TB, pid int, extra ...int) TreeCPU {
	t.Helper()
	c, err := readTreeCPU(pid, extra)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func readTreeCPU(root int, extra []int) (TreeCPU, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return TreeCPU{}, fmt.Errorf("reading /proc: %w", err)
	}
	type proc struct {
		ppid        int
		own, reaped time.Duration
	}
	procs := map[int]proc{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		f, err := statFields(b)
		if err != nil {
			return TreeCPU{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		procs[pid] = proc{ppid: int(f[1]), own: ticks(f[11] + f[12]), reaped: ticks(f[13] + f[14])}
	}
	if _, ok := procs[root]; !ok {
		return TreeCPU{}, fmt.Errorf("process %d not found in /proc", root)
	}
	in := map[int]bool{root: true}
	for _, pid := range extra {
		if _, ok := procs[pid]; ok {
			in[pid] = true
		}
	}
	for grew := true; grew; { // descendants by ancestry, whatever order /proc lists them in
		grew = false
		for pid, p := range procs {
			if !in[pid] && in[p.ppid] {
				in[pid], grew = true, true
			}
		}
	}
	var c TreeCPU
	for pid := range in {
		c.Own += procs[pid].own
		c.Reaped += procs[pid].reaped
		c.Processes++
	}
	return c, nil
}

// statFields returns the numeric fields of a /proc/PID/stat line after
// the command name, from field 4 (ppid) on, indexed as in proc(5) minus 3
// (so f[1] is ppid, f[11] utime, f[12] stime, f[13] cutime, f[14]
// cstime); the state letter (field 3) is f[0] = 0.
func statFields(b []byte) ([]int64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("no ')' in %q", b)
	}
	toks := bytes.Fields(b[i+1:])
	if len(toks) < 15 {
		return nil, fmt.Errorf("%d fields after the command name in %q", len(toks), b)
	}
	f := make([]int64, 15)
	for k := 1; k < 15; k++ {
		v, err := strconv.ParseInt(string(toks[k]), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("field %d: %w", k+3, err)
		}
		f[k] = v
	}
	return f, nil
}

func ticks(n int64) time.Duration { return time.Duration(n) * CPUTick }

// EscapedBurner is a demo worker "exec" command whose shell forks a CPU
// burner that escapes the worker's tree at once (the subshell that starts
// it exits, so it is re-parented away and reaped outside the tree), then
// waits for the burner to write its own times(2) to timesFile (read them
// with ShellTimes).
func EscapedBurner(timesFile string) []byte {
	script := `(/bin/sh -c 'i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; times > "$1.tmp"; mv "$1.tmp" "$1"' sh "$1" &); ` +
		`while [ ! -s "$1" ]; do sleep 0.05; done`
	cmd, _ := json.Marshal(map[string]any{"type": "exec", "argv": []string{"/bin/sh", "-c", script, "sh", timesFile}, "ms": 50000})
	return cmd
}

// ShellTimes sums the first line of a shell's `times` (its own user and
// system time), e.g. "0m0.290000s 0m0.010000s": the kernel's account of
// that process, independent of anything workerscope reads.
func ShellTimes(t testing.TB, out string) time.Duration {
	t.Helper()
	line, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	var total time.Duration
	for _, f := range strings.Fields(line) {
		m, s, ok := strings.Cut(strings.TrimSuffix(f, "s"), "m")
		mins, err1 := strconv.Atoi(m)
		secs, err2 := strconv.ParseFloat(s, 64)
		if !ok || err1 != nil || err2 != nil {
			t.Fatalf("times output %q", out)
		}
		total += time.Duration(mins)*time.Minute + time.Duration(secs*float64(time.Second))
	}
	return total
}

// ThreadCPU is the calling thread's CPU time, exact to the nanosecond
// (CLOCK_THREAD_CPUTIME_ID). Not getrusage(RUSAGE_THREAD): on a kernel
// with tick-based CPU accounting (CONFIG_TICK_CPU_ACCOUNTING, the common
// one) that reports the thread's runtime as of the scheduler's last
// update, which comes at a tick (4 ms at HZ=250) or when something on the
// CPU is woken, so a timed stretch that wakes other threads at its end is
// charged time spent before it. Lock the goroutine to its thread
// (runtime.LockOSThread) around what is timed.
func ThreadCPU() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return time.Duration(ts.Nano())
}
