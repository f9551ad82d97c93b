//go:build linux

package sampler

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/workerscope/workerscope/internal/testutil"
	"github.com/workerscope/workerscope/workers"
	"github.com/workerscope/workerscope/workers/workerstest"
)

// TestEscapedDescendant: a descendant that scrubbed its environment,
// started its own session and was re-parented away is invisible to
// ancestry and to the marker. With a per-worker cgroup (Cgroups=required,
// tiers cgroup1 or cgroup2) it still counts in the worker's tree and dies
// with the worker's stop; without cgroups it escapes both (the documented
// limit of the watchdog tier).
func TestEscapedDescendant(t *testing.T) {
	cfg := workerstest.DemoConfig(func(c *workers.Config) { c.Cgroups = workers.CgroupsRequired; c.StopGrace = time.Second })
	m := newCgroupManager(t, cfg)
	s, err := New(m, Options{MinInterval: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Data struct {
			PID int `json:"pid"`
		} `json:"data"`
	}
	if err := json.Unmarshal(workerstest.MustSend(t, m, "k", `{"type":"escape","ms":60000}`), &r); err != nil || r.Data.PID == 0 {
		t.Fatalf("escape: %v %+v", err, r)
	}
	escaped := r.Data.PID
	t.Cleanup(func() { _ = syscall.Kill(escaped, syscall.SIGKILL) })
	testutil.Eventually(t, 10*time.Second, "the escaped sleeper counted in the tree", func() bool {
		for _, w := range s.Report(context.Background()).Workers {
			if w.Key == "k" && w.Err == nil && w.Processes == 2 {
				return true
			}
		}
		return false
	})
	if err := m.Stop(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the escaped sleeper to die with its worker", func() bool {
		err := syscall.Kill(escaped, 0)
		return errors.Is(err, syscall.ESRCH) || zombie(escaped)
	})
}

// zombie reports whether pid has exited and waits to be reaped (the test
// process is the subreaper that reaps it).
func zombie(pid int) bool {
	st, err := newProcTreeSampler("").sc.Reader().ReadStat(pid)
	return err == nil && st.State == 'Z'
}

// walkOnly is the Manager without its cgroup figures: a sampler over it
// measures every tree by walking /proc (membership still exact).
type walkOnly struct{ m *workers.Manager }

func (w walkOnly) Snapshot() []workers.WorkerSnapshot { return w.m.Snapshot() }
func (w walkOnly) WorkerPIDs(id string) ([]int, bool) { return w.m.WorkerPIDs(id) }

// TestCgroupFiguresAgainstTheWalkAndProc holds the two ways of measuring
// a worker with a cgroup against each other and against the test's own
// reading of /proc, on the same tree at the same moments:
//   - CPU: the group's cpu.stat (cgroup path), the sampler's /proc walk,
//     and the test's sum of utime+stime+cutime+cstime over the tree agree
//     to the ticks /proc truncates;
//   - tasks: pids.current equals the threads the test counts in /proc;
//   - memory: both see 64 MiB the worker holds (the group charges it, the
//     walk sums resident sizes: different quantities, both above it);
//   - a descendant that escaped (double fork, re-parented, reaped outside
//     the tree) and burned CPU: the group keeps its time, the walk loses
//     it once it has exited; its own times(2) is the truth.
func TestCgroupFiguresAgainstTheWalkAndProc(t *testing.T) {
	cfg := workerstest.DemoConfig(func(c *workers.Config) {
		c.Cgroups, c.MemoryMax, c.PidsMax, c.StopGrace = workers.CgroupsRequired, 1<<30, 4096, time.Second
	})
	m := newCgroupManager(t, cfg)
	viaCgroup, err := New(m, Options{MinInterval: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	viaWalk, err := New(walkOnly{m}, Options{MinInterval: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = viaCgroup.Close(); _ = viaWalk.Close() })
	ctx := context.Background()
	workerstest.MustSend(t, m, "k", `{"type":"get_state"}`)
	// Both samplers see the worker from its first pass on.
	viaCgroup.Report(ctx)
	viaWalk.Report(ctx)
	workerstest.MustSend(t, m, "k", `{"type":"work","cpu_ms":300,"child_cpu_ms":200,"mem_mib":64}`)

	one := func(s *Sampler) WorkerReport {
		t.Helper()
		r := s.Report(ctx)
		if len(r.Workers) != 1 || r.Workers[0].Err != nil {
			t.Fatalf("report %+v", r.Workers)
		}
		return r.Workers[0]
	}
	pid := m.Snapshot()[0].PID
	truth := testutil.ReadTreeCPU(t, pid)
	cg, walk := one(viaCgroup), one(viaWalk)
	after := testutil.ReadTreeCPU(t, pid)
	if !cg.FromCgroup.CPU || !cg.FromCgroup.Memory || !cg.FromCgroup.Tasks || walk.FromCgroup.Any() {
		t.Fatalf("figures from the cgroup: %+v (cgroup path), %+v (walk)", cg.FromCgroup, walk.FromCgroup)
	}
	sec := func(w WorkerReport) time.Duration {
		return time.Duration((w.CPUUser + w.CPUSystem) * float64(time.Second))
	}
	// The idle worker uses well under a tick between the readings.
	tol := testutil.CPUSlack(truth.Processes) + after.Total() - truth.Total() + 10*time.Millisecond
	t.Logf("CPU: cgroup %s, walk %s, /proc %s (±%s); memory: cgroup %d, walk RSS %d; tasks: cgroup %d, walk %d",
		sec(cg), sec(walk), truth.Total(), tol, cg.RSSBytes, walk.RSSBytes, cg.Threads, walk.Threads)
	for name, got := range map[string]time.Duration{"cgroup": sec(cg), "walk": sec(walk)} {
		if d := got - truth.Total(); d < -tol || d > tol {
			t.Errorf("%s CPU %s, /proc says %s (±%s)", name, got, truth.Total(), tol)
		}
	}
	if cg.RSSBytes < 64<<20 || walk.RSSBytes < 64<<20 {
		t.Errorf("memory: cgroup %d, walk %d; both should hold the worker's 64 MiB", cg.RSSBytes, walk.RSSBytes)
	}
	// pids.current against the threads /proc lists, retried while the Go
	// runtime of the worker starts or parks a thread between the readings.
	testutil.Eventually(t, 5*time.Second, "pids.current to equal the tree's threads in /proc", func() bool {
		got := one(viaCgroup).Threads
		return got == procThreads(t, pid) && got == one(viaWalk).Threads
	})

	// A descendant that escapes and burns CPU: re-parented away at once,
	// reaped outside the tree when it exits.
	times := filepath.Join(t.TempDir(), "times")
	cmd := testutil.EscapedBurner(times)
	cg0, walk0, tree0 := one(viaCgroup), one(viaWalk), testutil.ReadTreeCPU(t, pid)
	workerstest.MustSend(t, m, "k", string(cmd))
	time.Sleep(100 * time.Millisecond) // the burner's exit is past; it is reaped by the subreaper or init
	cg1, walk1, tree1 := one(viaCgroup), one(viaWalk), testutil.ReadTreeCPU(t, pid)
	b, err := os.ReadFile(times)
	if err != nil {
		t.Fatal(err)
	}
	escaped := testutil.ShellTimes(t, string(b))
	tree := tree1.Sub(tree0)
	dCg, dWalk := sec(cg1)-sec(cg0), sec(walk1)-sec(walk0)
	tol = testutil.CPUSlack(tree.Processes+1) + 20*time.Millisecond
	t.Logf("escaped burner %s; tree %s; cgroup +%s, walk +%s", escaped, tree.Total(), dCg, dWalk)
	if escaped < 50*time.Millisecond {
		t.Fatalf("the escaped burner used only %s: the test proves nothing", escaped)
	}
	if want := tree.Total() + escaped; dCg < want-tol || dCg > want+tol {
		t.Errorf("cgroup CPU grew %s, want the tree's %s and the escaped burner's %s (±%s)", dCg, tree.Total(), escaped, tol)
	}
	if dWalk > tree.Total()+tol {
		t.Errorf("the walk grew %s: more than the tree's %s, so it saw the escaped burner (then this test no longer shows the difference)", dWalk, tree.Total())
	}
}

// procThreads counts the threads of pid's tree (itself and every live
// descendant by ppid) straight from /proc/PID/stat's num_threads.
func procThreads(t *testing.T, root int) int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	type proc struct{ ppid, threads int }
	procs := map[int]proc{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		ppid, _ := strconv.Atoi(f[1])
		n, _ := strconv.Atoi(f[17])
		if f[0] == "Z" {
			n = 1 // a zombie holds one task until it is reaped, as pids.current counts
		}
		procs[pid] = proc{ppid, n}
	}
	in := func(pid int) bool {
		for p := pid; p > 1; p = procs[p].ppid {
			if p == root {
				return true
			}
			if _, ok := procs[p]; !ok {
				return false
			}
		}
		return false
	}
	total := 0
	for pid, p := range procs {
		if in(pid) {
			total += p.threads
		}
	}
	return total
}

// newCgroupManager starts a Manager whose workers get their own cgroups
// (cfg asks for them), skipping the test or benchmark where the machine
// cannot make them, and closes it at cleanup.
func newCgroupManager(tb testing.TB, cfg workers.Config) *workers.Manager {
	tb.Helper()
	m, err := workers.New(cfg)
	if err != nil {
		tb.Skipf("no per-worker cgroups on this machine: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		_ = m.Close(ctx)
	})
	return m
}

// TestCgroupMemoryIsTheWorkingSet: a worker with a memory cgroup that
// writes 64 MiB to a file has that page cache charged to its group, but
// its memory figure is the working set (the charge less inactive file
// pages, as the kubelet reckons it), so the cache does not read as a leak.
// The truth is the file the test had it write: its size, against the
// charge's growth and the working set's.
func TestCgroupMemoryIsTheWorkingSet(t *testing.T) {
	dir := t.TempDir()
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil || fs.Type == unix.TMPFS_MAGIC {
		t.Skipf("%s is on tmpfs (%v): its pages are shared memory, not file cache", dir, err)
	}
	cfg := workerstest.DemoConfig(func(c *workers.Config) {
		c.Cgroups, c.MemoryMax, c.StopGrace = workers.CgroupsRequired, 1<<30, time.Second
	})
	m := newCgroupManager(t, cfg)
	if m.Limits().Enforcement[workers.LimitMemory] == string(workers.TierWatchdog) {
		t.Skip("no memory cgroup here: the watchdog enforces the memory limit")
	}
	workerstest.MustSend(t, m, "k", `{"type":"get_state"}`)
	id := m.Snapshot()[0].ID
	var before, after workers.CgroupUsage
	if !m.WorkerCgroupUsage(id, &before) || !before.HasMemory {
		t.Fatalf("no memory figure from the worker's cgroup: %+v", before)
	}
	const size = 64 << 20
	file := filepath.Join(dir, "cache")
	argv, _ := json.Marshal([]string{"/bin/sh", "-c", `head -c ` + strconv.Itoa(size) + ` /dev/zero > "$0"`, file})
	workerstest.MustSend(t, m, "k", `{"type":"exec","argv":`+string(argv)+`,"ms":30000}`)
	if st, err := os.Stat(file); err != nil || st.Size() != size {
		t.Fatalf("the worker wrote %v (%v), want %d bytes", st, err, size)
	}
	if !m.WorkerCgroupUsage(id, &after) || !after.HasMemory {
		t.Fatalf("no memory figure: %+v", after)
	}
	charged, working := after.MemoryCharged-before.MemoryCharged, after.MemoryBytes-before.MemoryBytes
	t.Logf("64 MiB written: charge %+.1f MiB (now %.1f MiB), working set %+.1f MiB (now %.1f MiB)",
		float64(charged)/(1<<20), float64(after.MemoryCharged)/(1<<20), float64(working)/(1<<20), float64(after.MemoryBytes)/(1<<20))
	if charged < size/2 {
		t.Fatalf("the group's charge grew by %d bytes for %d bytes of page cache: the file was not charged to it", charged, size)
	}
	if after.MemoryCharged-after.MemoryBytes < size/2 || working > size/4 {
		t.Errorf("working set %d of charge %d: want the 64 MiB of fresh cache (inactive file pages) left out", after.MemoryBytes, after.MemoryCharged)
	}
	s, err := New(m, Options{MinInterval: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, w := range s.Report(context.Background()).Workers {
		if w.ID == id && (!w.FromCgroup.Memory || w.RSSBytes > after.MemoryCharged-size/2) {
			t.Errorf("the sampler's memory for the worker: %d bytes (from cgroup %v), want the working set", w.RSSBytes, w.FromCgroup.Memory)
		}
	}
}
