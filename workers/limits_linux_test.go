//go:build linux

package workers_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/workerscope/workerscope/internal/testutil"

	"github.com/workerscope/workerscope/internal/cgroup"
	"github.com/workerscope/workerscope/internal/procfs"
	"github.com/workerscope/workerscope/internal/sandbox"
	"github.com/workerscope/workerscope/workers"
)

// cgroupLayout is this process's cgroup layout, for checks and cleanup.
func cgroupLayout(t testing.TB) cgroup.Layout {
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Skipf("no /proc/self/cgroup: %v", err)
	}
	return cgroup.Detect("", self)
}

// removeInstanceCgroups removes (killing what is inside) every cgroup of
// the instance, and reports the ones it found.
func removeInstanceCgroups(t testing.TB, inst string) []string {
	var found []string
	for _, lo := range cgroup.FindLeftovers(cgroupLayout(t).Bases(), "workerscope-"+inst+"-") {
		found = append(found, lo.Dirs...)
		if err := lo.Remove(); err != nil {
			t.Errorf("removing leftover cgroup %s: %v", lo.Name, err)
		}
	}
	return found
}

// cgroupsLeft lists the directories of m's worker cgroups that are still
// there (after Close: none may be, whatever the tier).
func cgroupsLeft(t testing.TB, m *workers.Manager) []string {
	var dirs []string
	for _, lo := range cgroup.FindLeftovers(cgroupLayout(t).Bases(), "workerscope-"+m.ID()+"-") {
		dirs = append(dirs, lo.Dirs...)
	}
	return dirs
}

// limitManager starts a Manager with limits; it skips the test when the
// wanted tier cannot run here ("": whatever the default Cgroups, auto,
// chooses), and at cleanup checks that neither processes nor cgroups of it
// are left.
func limitManager(t *testing.T, wantTier workers.Tier, mod func(*workers.Config)) *workers.Manager {
	t.Helper()
	cfg := demoConfig(t)
	cfg.WatchdogInterval = 100 * time.Millisecond
	cfg.RuntimeDir = t.TempDir()
	mod(&cfg)
	switch wantTier {
	case workers.TierCgroup1, workers.TierCgroup2:
		if os.Geteuid() != 0 {
			t.Skip("cgroup tiers need root (or a delegated cgroup) here")
		}
		cfg.Cgroups = workers.CgroupsRequired
		l := cgroupLayout(t)
		if wantTier == workers.TierCgroup1 && l.PureV2 {
			t.Skip("cgroup v1 tier: this machine has a pure cgroup v2 hierarchy")
		}
		if wantTier == workers.TierCgroup2 && !l.PureV2 {
			t.Skip("cgroup v2 tier: this machine has no pure cgroup v2 hierarchy (hybrid or v1)")
		}
	case workers.TierWatchdog:
		cfg.Cgroups = workers.CgroupsOff
	}
	// Cleanups run last-in first-out: this check runs after newManager's
	// Close (and its leftover-process check).
	var m *workers.Manager
	t.Cleanup(func() {
		if m == nil {
			return // New failed
		}
		if dirs := removeInstanceCgroups(t, m.ID()); len(dirs) > 0 {
			t.Errorf("cgroups left after Close: %v", dirs)
		}
	})
	m = newManager(t, cfg)
	if li := m.Limits(); wantTier != "" && li.Tier != wantTier {
		t.Fatalf("tier %q (%s), want %q", li.Tier, li.Reason, wantTier)
	}
	return m
}

// sendErr sends cmd and returns the error (the test fails on success).
func sendErr(t *testing.T, m *workers.Manager, key, cmd string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	raw, err := m.Send(ctx, key, []byte(cmd))
	if err == nil {
		t.Fatalf("send %s: succeeded (%s), want an error", cmd, raw)
	}
	return err
}

// waitEvent waits for an event of the given type on sub.
func waitEvent(t *testing.T, sub *workers.Subscription, typ string, d time.Duration) map[string]any {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case ev, ok := <-sub.C:
			if !ok {
				t.Fatalf("subscription closed waiting for %s", typ)
			}
			if ev.Type == typ {
				var obj map[string]any
				_ = json.Unmarshal(ev.Data, &obj)
				return obj
			}
		case <-deadline:
			t.Fatalf("no %s event within %s", typ, d)
		}
	}
}

func checkLimitExit(t *testing.T, err error, reason workers.ExitReason, limit string) {
	t.Helper()
	var xe *workers.ExitError
	if !errors.As(err, &xe) || xe.Reason != reason {
		t.Fatalf("err = %v, want an ExitError with reason %s", err, reason)
	}
	var le *workers.LimitError
	if !errors.Is(err, workers.ErrLimitExceeded) || !errors.As(err, &le) || le.Limit != limit {
		t.Fatalf("err = %v, want a %s LimitError", err, limit)
	}
	if !strings.Contains(err.Error(), limit+" limit") {
		t.Fatalf("error %q does not name the limit", err)
	}
}

// memoryCase: a worker that grabs twice its memory limit is stopped, its
// caller gets the memory error, subscribers the exit reason, and the next
// command respawns.
func memoryCase(t *testing.T, tier workers.Tier, reason workers.ExitReason, mods ...func(*workers.Config)) {
	m := limitManager(t, tier, func(c *workers.Config) {
		c.MemoryMax = 64 << 20
		for _, mod := range mods {
			mod(c)
		}
	})
	sub, err := m.Subscribe("mem", 0)
	if err != nil {
		t.Fatal(err)
	}
	send(t, m, "mem", `{"type":"get_state"}`)
	err = sendErr(t, m, "mem", `{"type":"hold","mib":128,"ms":20000}`)
	checkLimitExit(t, err, reason, workers.LimitMemory)
	if ev := waitEvent(t, sub, "worker_exit", 10*time.Second); ev["reason"] != string(reason) {
		t.Fatalf("worker_exit %v, want reason %s", ev, reason)
	}
	st := m.Stats()
	if st.Exits[reason] != 1 || st.LimitHits[workers.LimitMemory] < 1 || st.Exits[workers.ExitCrashed] != 0 {
		t.Fatalf("stats exits %v limit hits %v", st.Exits, st.LimitHits)
	}
	if r := send(t, m, "mem", `{"type":"get_state"}`); !r.Success {
		t.Fatalf("no respawn after the limit: %+v", r)
	}
	if w, _ := snapshotOf(m, "mem"); w.MemoryMax != 64<<20 || w.Restarts != 1 {
		t.Fatalf("snapshot %+v", w)
	}
}

func TestCgroup1MemoryLimitOOMKills(t *testing.T) {
	memoryCase(t, workers.TierCgroup1, workers.ExitOOMKilled)
}

func TestWatchdogMemoryLimit(t *testing.T) {
	memoryCase(t, workers.TierWatchdog, workers.ExitMemoryLimit)
}

type forkResult struct {
	Success bool `json:"success"`
	Data    struct {
		Started int    `json:"started"`
		Failed  int    `json:"failed"`
		Error   string `json:"error"`
	} `json:"data"`
}

func forkCmd(t *testing.T, m *workers.Manager, key string, n int) forkResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	raw, err := m.Send(ctx, key, fmt.Appendf(nil, `{"type":"fork","count":%d,"ms":60000}`, n))
	if err != nil {
		t.Fatalf("fork: %v", err)
	}
	var r forkResult
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// v1Dir is the worker's cgroup directory on a v1 controller's hierarchy.
func v1Dir(t *testing.T, pid int, ctrl string) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	_, v1 := cgroup.ParseSelf(b)
	return filepath.Join(cgroup.DefaultRoot, ctrl, v1[ctrl])
}

func readInt(t *testing.T, path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return n
}

func TestCgroup1PidsLimitRefusesForks(t *testing.T) {
	m := limitManager(t, workers.TierCgroup1, func(c *workers.Config) { c.PidsMax = 40 })
	sub, err := m.Subscribe("pids", 0)
	if err != nil {
		t.Fatal(err)
	}
	st := send(t, m, "pids", `{"type":"get_state"}`)
	dir := v1Dir(t, st.Data.PID, "pids")
	if !strings.Contains(dir, "workerscope-"+m.ID()) {
		t.Fatalf("worker %d is in pids cgroup %s, not its own", st.Data.PID, dir)
	}
	if got := readInt(t, filepath.Join(dir, "pids.max")); got != 40 {
		t.Fatalf("pids.max = %d", got)
	}
	r := forkCmd(t, m, "pids", 200)
	if r.Data.Failed == 0 || r.Data.Started >= 40 {
		t.Fatalf("fork of 200 under pids.max 40: %+v", r.Data)
	}
	if cur := readInt(t, filepath.Join(dir, "pids.current")); cur > 40 {
		t.Fatalf("pids.current = %d > 40", cur)
	}
	ev := waitEvent(t, sub, "worker_limit", 5*time.Second)
	if ev["limit"] != workers.LimitPids || ev["action"] != "fork_refused" {
		t.Fatalf("worker_limit event %v", ev)
	}
	// The worker lives on, and its tree is exactly its cgroup.
	if r := send(t, m, "pids", `{"type":"get_state"}`); r.Data.PID != st.Data.PID {
		t.Fatalf("worker replaced: %+v", r)
	}
	w, _ := snapshotOf(m, "pids")
	pids, ok := m.WorkerPIDs(w.ID)
	if !ok || len(pids) != r.Data.Started+1 {
		t.Fatalf("WorkerPIDs = %v, %v; want the worker and %d children", pids, ok, r.Data.Started)
	}
	if m.Stats().LimitHits[workers.LimitPids] == 0 || w.LimitHits[workers.LimitPids] == 0 || w.PidsMax != 40 {
		t.Fatalf("limit hits %v, snapshot %+v", m.Stats().LimitHits, w)
	}
	if err := m.Stop(context.Background(), "pids"); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("pid %d of the stopped worker alive", pid)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("cgroup %s not removed after stop: %v", dir, err)
	}
}

func TestWatchdogPidsLimit(t *testing.T) {
	m := limitManager(t, workers.TierWatchdog, func(c *workers.Config) { c.PidsMax = 40 })
	sub, err := m.Subscribe("pids", 0)
	if err != nil {
		t.Fatal(err)
	}
	// The watchdog may stop the worker while it is still forking: then the
	// caller gets the limit error.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := m.Send(ctx, "pids", []byte(`{"type":"fork","count":200,"ms":60000}`)); err != nil {
		checkLimitExit(t, err, workers.ExitPidsLimit, workers.LimitPids)
	}
	if ev := waitEvent(t, sub, "worker_exit", 20*time.Second); ev["reason"] != string(workers.ExitPidsLimit) {
		t.Fatalf("worker_exit %v", ev)
	}
	if st := m.Stats(); st.Exits[workers.ExitPidsLimit] != 1 || st.LimitHits[workers.LimitPids] != 1 {
		t.Fatalf("stats %v %v", st.Exits, st.LimitHits)
	}
	if r := send(t, m, "pids", `{"type":"get_state"}`); !r.Success {
		t.Fatalf("no respawn: %+v", r)
	}
}

// cpuTicks is a process's CPU time (own and reaped children) from /proc.
func cpuTicks(t *testing.T, pid int) uint64 {
	st, err := procfs.NewReader("").ReadStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	return st.UTime + st.STime
}

func TestCgroup1CPUMax(t *testing.T) {
	m := limitManager(t, workers.TierCgroup1, func(c *workers.Config) { c.CPUMax = 0.5 })
	sub, err := m.Subscribe("cpu", 0)
	if err != nil {
		t.Fatal(err)
	}
	st := send(t, m, "cpu", `{"type":"get_state"}`)
	dir := v1Dir(t, st.Data.PID, "cpu")
	if q := readInt(t, filepath.Join(dir, "cpu.cfs_quota_us")); q != 50000 {
		t.Fatalf("cfs_quota_us = %d", q)
	}
	before := cpuTicks(t, st.Data.PID)
	start := time.Now()
	send(t, m, "cpu", `{"type":"prompt","cpu_ms":1500,"events":1}`)
	waitEvent(t, sub, "agent_end", 30*time.Second)
	wall := time.Since(start)
	cpu := time.Duration(cpuTicks(t, st.Data.PID)-before) * time.Second / procfs.ClockTicks
	t.Logf("cpu max 0.5: %s CPU in %s wall", cpu, wall.Round(time.Millisecond))
	// The truth of throttling is the kernel's, not a wall/CPU ratio (which
	// a loaded machine satisfies without any quota): the group was
	// throttled, and it never ran more than its quota per period, so its
	// CPU stays within 0.5 × wall plus one 100 ms period.
	stat := readKV(t, filepath.Join(dir, "cpu.stat"))
	if stat["nr_throttled"] == 0 || stat["throttled_time"] == 0 {
		t.Fatalf("cpu.stat %v: the kernel never throttled the group", stat)
	}
	if limit := wall/2 + 100*time.Millisecond; cpu < time.Second || cpu > limit {
		t.Fatalf("%s of CPU in %s of wall time: want ≥ 1s and ≤ %s (0.5 cores)", cpu, wall, limit)
	}
	testutil.Eventually(t, 5*time.Second, "cpu throttling counted", func() bool {
		return m.Stats().LimitHits[workers.LimitCPU] > 0
	})
}

// readKV reads a cgroup "key value" file (cpu.stat, memory.stat).
func readKV(t *testing.T, path string) map[string]int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("%s: %q: %v", path, line, err)
			}
			out[k] = n
		}
	}
	return out
}

func TestRequiredWithoutCgroupsFails(t *testing.T) {
	cfg := demoConfig(t)
	cfg.MemoryMax = 64 << 20
	cfg.Cgroups = workers.CgroupsRequired
	cfg.CgroupRoot = t.TempDir() // no hierarchies at all
	cfg.RuntimeDir = "-"
	_, err := workers.New(cfg)
	if err == nil || !strings.Contains(err.Error(), "required") {
		t.Fatalf("New = %v, want an error explaining why cgroups are unusable", err)
	}
	t.Log(err)
}

const supervisorHelperEnv = "WORKERSCOPE_TEST_SUPERVISOR"

// runSupervisorHelper runs a Manager whose worker starts long-lived
// children, prints "ready INSTANCE", and waits to be SIGKILLed.
func runSupervisorHelper() int {
	cfg := workers.Config{
		Command:    []string{os.Args[0]},
		Env:        []string{"WORKERSCOPE_DEMO_ROLE=worker"},
		RuntimeDir: os.Getenv("WORKERSCOPE_TEST_RUNTIME_DIR"),
		Cgroups:    workers.CgroupMode(os.Getenv(supervisorHelperEnv)),
	}
	if cfg.Cgroups == workers.CgroupsRequired {
		cfg.PidsMax = 100
	}
	if exe := os.Getenv("WORKERSCOPE_TEST_EXE"); exe != "" { // isolated workers (isolation_linux_test.go)
		cfg.Command, cfg.SandboxHelper = []string{exe}, []string{exe}
		cfg.WorkerUIDs, _ = sandbox.ParseUIDRange(os.Getenv("WORKERSCOPE_TEST_UIDS"))
		cfg.WorkerDirRoot = os.Getenv("WORKERSCOPE_TEST_DIR_ROOT")
		cfg.Sandbox = sandbox.Mode(os.Getenv("WORKERSCOPE_TEST_SANDBOX"))
	}
	os.Unsetenv(supervisorHelperEnv) // the workers are demo workers, not helpers
	m, err := workers.New(cfg)
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	ctx := context.Background()
	for _, cmd := range []string{`{"type":"fork","count":3,"ms":120000}`,
		`{"type":"prompt","child_ms":120000,"child_orphan":true,"child_setsid":true,"events":0}`} {
		if _, err := m.Send(ctx, "k", []byte(cmd)); err != nil {
			fmt.Println("error", err)
			return 1
		}
	}
	time.Sleep(500 * time.Millisecond) // the orphan-maker forks and exits
	fmt.Println("ready", m.ID())
	select {}
}

func recoveryCase(t *testing.T, mode workers.CgroupMode) {
	if mode == workers.CgroupsRequired {
		if os.Geteuid() != 0 || cgroupLayout(t).PureV2 {
			t.Skip("needs root on a hybrid cgroup machine")
		}
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), supervisorHelperEnv+"="+string(mode), "WORKERSCOPE_TEST_RUNTIME_DIR="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var inst string
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if inst == "" {
			return
		}
		// Whatever the test left: kill it all.
		for _, pid := range markedPIDs(t, inst) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		removeInstanceCgroups(t, inst)
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready ") {
		t.Fatalf("helper: %q %v", line, err)
	}
	inst = strings.TrimSpace(strings.TrimPrefix(line, "ready "))
	// A live instance is never touched by another's recovery.
	m0 := limitManager(t, "", func(c *workers.Config) { c.RuntimeDir = dir })
	if m0.Stats().LeftoversKilled != 0 || len(markedPIDs(t, inst)) < 4 {
		t.Fatalf("recovery touched a live instance: killed %d, %d left", m0.Stats().LeftoversKilled, len(markedPIDs(t, inst)))
	}
	before := markedPIDs(t, inst)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	// The worker died with its parent (parent-death signal); its children
	// and the double-forked orphan did not.
	testutil.Eventually(t, 5*time.Second, "the worker's parent-death", func() bool { return len(markedPIDs(t, inst)) < len(before) })
	survivors := markedPIDs(t, inst)
	if len(survivors) < 3 {
		t.Fatalf("expected surviving grandchildren, found %v", survivors)
	}
	m := limitManager(t, "", func(c *workers.Config) { c.RuntimeDir = dir })
	testutil.Eventually(t, 5*time.Second, "leftovers gone", func() bool { return len(markedPIDs(t, inst)) == 0 })
	if n := m.Stats().LeftoversKilled; n < uint64(len(survivors)) {
		t.Fatalf("LeftoversKilled = %d, want ≥ %d", n, len(survivors))
	}
	if dirs := removeInstanceCgroups(t, inst); len(dirs) > 0 {
		t.Fatalf("cgroups of the dead instance left: %v", dirs)
	}
	if _, err := os.Stat(filepath.Join(dir, inst+".lock")); !os.IsNotExist(err) {
		t.Fatalf("lock file of the dead instance left: %v", err)
	}
}

// markedPIDs lists live processes whose marker names the instance.
func markedPIDs(t testing.TB, inst string) []int {
	r := procfs.NewReader("")
	pids, _ := r.PIDs(nil)
	var out []int
	for _, pid := range pids {
		st, err := r.ReadStat(pid)
		if err != nil || st.State == 'Z' {
			continue
		}
		if v, ok, _ := r.EnvValue(pid, workers.MarkerEnv); ok && strings.HasPrefix(v, inst+"-") {
			out = append(out, pid)
		}
	}
	return out
}

func TestRecoveryAfterSIGKILLWithoutCgroups(t *testing.T) {
	recoveryCase(t, workers.CgroupsOff)
}

func TestRecoveryAfterSIGKILLWithCgroups(t *testing.T) {
	recoveryCase(t, workers.CgroupsRequired)
}

func TestCgroup2MemoryLimitOOMKills(t *testing.T) {
	memoryCase(t, workers.TierCgroup2, workers.ExitOOMKilled)
}

// TestMembershipGroupsByDefault: with the default Cgroups (auto) and no
// limit set, every worker still gets a controller-less cgroup where one can
// be made: a descendant that scrubbed its environment and left the session
// is a member of its worker (WorkerPIDs), dies with the worker's stop, and
// the group is removed.
func TestMembershipGroupsByDefault(t *testing.T) {
	m := newManager(t, demoConfig(t))
	li := m.Limits()
	if !li.Cgroups {
		t.Skipf("no worker cgroups on this host (tier %s: %s)", li.Tier, li.Reason)
	}
	if (li.Tier != workers.TierCgroup1 && li.Tier != workers.TierCgroup2) || len(li.Enforcement) != 0 || !strings.Contains(li.Reason, "no limits set") {
		t.Fatalf("limits %+v, want a cgroup tier enforcing nothing, for membership", li)
	}
	var r struct {
		Data struct {
			PID int `json:"pid"`
		} `json:"data"`
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := m.Send(ctx, "k", []byte(`{"type":"escape","ms":60000}`))
	if err != nil || json.Unmarshal(out, &r) != nil || r.Data.PID == 0 {
		t.Fatalf("escape: %v %s", err, out)
	}
	escaped := r.Data.PID
	t.Cleanup(func() { _ = syscall.Kill(escaped, syscall.SIGKILL) })
	snap, _ := snapshotOf(m, "k")
	pids, ok := m.WorkerPIDs(snap.ID)
	if !ok || !slices.Contains(pids, escaped) {
		t.Fatalf("WorkerPIDs = %v, %v: want the escaped sleeper %d among them", pids, ok, escaped)
	}
	if left := cgroupsLeft(t, m); len(left) == 0 {
		t.Fatal("no worker cgroup found while the worker runs")
	}
	if err := m.Stop(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the escaped sleeper to die with its worker", func() bool {
		st, err := procfs.NewReader("").ReadStat(escaped)
		return err != nil || st.State == 'Z'
	})
	testutil.Eventually(t, 10*time.Second, "the worker's cgroup to be removed", func() bool { return len(cgroupsLeft(t, m)) == 0 })
}

// TestMembershipGroupCannotBeMade: when a worker's group cannot be made
// (here its base directory vanished after start-up; on a host, e.g.
// cgroup.max.descendants reached) and no limit depends on it, the worker
// runs without one rather than failing its spawn.
func TestMembershipGroupCannotBeMade(t *testing.T) {
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Skip(err)
	}
	v2, _ := cgroup.ParseSelf(self)
	root := t.TempDir() // a fake pure-v2 cgroupfs: probing works on any directory
	base := filepath.Join(root, filepath.FromSlash(v2))
	for _, f := range []string{filepath.Join(root, "cgroup.controllers"), filepath.Join(base, "cgroup.controllers"), filepath.Join(base, "cgroup.subtree_control")} {
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var logs testutil.Buffer
	cfg := demoConfig(t)
	cfg.CgroupRoot, cfg.RuntimeDir = root, "-"
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	m := newManager(t, cfg)
	if li := m.Limits(); li.Tier != workers.TierCgroup2 || !li.Cgroups {
		t.Fatalf("limits %+v, want membership groups in the fake tree", li)
	}
	if err := os.RemoveAll(base); err != nil {
		t.Fatal(err)
	}
	if r := send(t, m, "k", `{"type":"get_state"}`); !r.Success {
		t.Fatalf("get_state: %+v", r)
	}
	if snap, _ := snapshotOf(m, "k"); snap.PID == 0 {
		t.Fatalf("no worker: %+v", snap)
	} else if _, ok := m.WorkerPIDs(snap.ID); ok {
		t.Error("WorkerPIDs answers from a cgroup the worker does not have")
	}
	if !strings.Contains(logs.String(), "cannot create the worker's cgroup; it runs without one") {
		t.Errorf("no warning logged:\n%s", logs.String())
	}
}
