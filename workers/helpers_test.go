//go:build linux

package workers_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/workerscope/workerscope/internal/procfs"
	"github.com/workerscope/workerscope/internal/sandbox"
	"github.com/workerscope/workerscope/workers"
	"github.com/workerscope/workerscope/workers/demoworker"
)

// TestMain lets the test binary double as the demo worker: a real
// subprocess speaking the real protocol.
func TestMain(m *testing.M) {
	if os.Getenv(sandbox.RoleEnv) != "" { // the sandbox helper of isolated workers
		os.Exit(sandbox.Main())
	}
	if os.Getenv(noCapsProbeEnv) != "" {
		os.Exit(runNoCapsProbe())
	}
	if os.Getenv(supervisorHelperEnv) != "" && os.Getenv(demoworker.RoleEnv) == "" {
		os.Exit(runSupervisorHelper())
	}
	demoworker.TestMain(m)
}

func quietLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// demoConfig runs the demo worker from the test binary.
func demoConfig(t testing.TB, env ...string) workers.Config {
	return workers.Config{
		Command:   []string{os.Args[0]},
		Env:       append([]string{demoworker.RoleEnv + "=worker"}, env...),
		StopGrace: 2 * time.Second,
		Logger:    quietLogger(t),
	}
}

// newManager starts a Manager and, at cleanup, closes it and checks that no
// process of any of its workers is left.
func newManager(t testing.TB, cfg workers.Config) *workers.Manager {
	t.Helper()
	return startManager(t, cfg, workers.New)
}

// newClockManager is newManager with a clock the test moves: idle times,
// back-off, the running window and the reaper read it. Its reaper's
// ticks come only from workers.ReapNow unless cfg.ReapInterval is set.
func newClockManager(t testing.TB, cfg workers.Config) (*workers.Manager, *workers.FakeClock) {
	t.Helper()
	c := workers.NewFakeClock()
	if cfg.ReapInterval == 0 {
		cfg.ReapInterval = time.Hour
	}
	return startManager(t, cfg, func(cfg workers.Config) (*workers.Manager, error) { return workers.NewWithClock(cfg, c) }), c
}

// parallel marks t parallel with the other tests that share nothing
// process-wide: its Manager must not reap the process's children (the
// subreaper is for one Manager per process; another's reaper could reap
// this one's workers).
func parallel(t *testing.T, cfg *workers.Config) {
	t.Parallel()
	cfg.DisableSubreaper = true
}

func startManager(t testing.TB, cfg workers.Config, start func(workers.Config) (*workers.Manager, error)) *workers.Manager {
	t.Helper()
	m, err := start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
		if left := cgroupsLeft(t, m); len(left) > 0 {
			t.Errorf("cgroups left after Close: %v", left)
		}
		if left := leftovers(t, m); len(left) > 0 {
			t.Errorf("processes left after Close: %v", left)
			for _, l := range left { // and do not leak them into the next test
				_, pid, _ := strings.Cut(l, ":")
				n, _ := strconv.Atoi(pid)
				_ = syscall.Kill(n, syscall.SIGKILL)
			}
		}
	})
	return m
}

// leftovers scans /proc for live processes carrying a worker marker of
// this test process's managers.
func leftovers(t testing.TB, m *workers.Manager) []string {
	t.Helper()
	r := procfs.NewReader("")
	pids, err := r.PIDs(nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, pid := range pids {
		st, err := r.ReadStat(pid)
		if err != nil || st.State == 'Z' || pid == os.Getpid() {
			continue
		}
		v, ok, _ := r.EnvValue(pid, workers.MarkerEnv)
		if ok && strings.HasPrefix(v, m.ID()+"-") {
			out = append(out, v+":"+strconv.Itoa(pid))
		}
	}
	return out
}

// treeOf lists live processes carrying the given worker's marker.
func treeOf(t testing.TB, workerID string) []int {
	t.Helper()
	r := procfs.NewReader("")
	pids, _ := r.PIDs(nil)
	var out []int
	for _, pid := range pids {
		st, err := r.ReadStat(pid)
		if err != nil || st.State == 'Z' {
			continue
		}
		if v, ok, _ := r.EnvValue(pid, workers.MarkerEnv); ok && v == workerID {
			out = append(out, pid)
		}
	}
	return out
}

type response struct {
	ID      json.RawMessage `json:"id"`
	Type    string          `json:"type"`
	Command string          `json:"command"`
	Success bool            `json:"success"`
	Error   string          `json:"error"`
	Data    struct {
		PID       int  `json:"pid"`
		HeldMiB   int  `json:"held_mib"`
		Streaming bool `json:"streaming"`
		Children  int  `json:"children"`
	} `json:"data"`
}

func send(t testing.TB, m *workers.Manager, key, cmd string) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	raw, err := m.Send(ctx, key, []byte(cmd))
	if err != nil {
		t.Fatalf("send %s to %s: %v", cmd, key, err)
	}
	var r response
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("response %s: %v", raw, err)
	}
	return r
}

func snapshotOf(m *workers.Manager, key string) (workers.WorkerSnapshot, bool) {
	for _, w := range m.Snapshot() {
		if w.Key == key {
			return w, true
		}
	}
	return workers.WorkerSnapshot{}, false
}

func alive(pid int) bool {
	st, err := procfs.NewReader("").ReadStat(pid)
	return err == nil && st.State != 'Z'
}
