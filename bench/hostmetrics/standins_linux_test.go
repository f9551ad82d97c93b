//go:build linux

package hostmetrics

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/workerscope/workerscope/workers"
	"github.com/workerscope/workerscope/workers/workerstest"
)

// standIns starts n idle stand-in workers with workerstest.IdleSleepers
// (`sleep 3600` found on PATH, each with its marker and worker ID of this
// run's own) under a name of this run's own, and returns their snapshots,
// the name and their pids. Both sides must see exactly these processes, and
// other benchmarks on the machine start the same stand-ins: their `sleep`
// would match the scraper's name filter.
//
// PATH first holds a directory whose sleep is a script that execs the
// system's sleep through a symlink called name: the process keeps its pid,
// start time and marker, and its /proc/PID/comm, the executable name the
// scraper's filter matches, is name (a symlink called sleep would leave it
// "sleep": the kernel takes comm from the path given to execve).
func standIns(tb testing.TB, n int) ([]workers.WorkerSnapshot, string, map[int64]bool) {
	tb.Helper()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	name := "wsbench" + strconv.Itoa(os.Getpid()) // ≤ 15 bytes: a whole comm
	if err := os.Symlink(sleep, filepath.Join(dir, name)); err != nil {
		tb.Fatal(err)
	}
	script := fmt.Sprintf("#!/bin/sh\nexec %s \"$@\"\n", filepath.Join(dir, name))
	if err := os.WriteFile(filepath.Join(dir, "sleep"), []byte(script), 0o755); err != nil {
		tb.Fatal(err)
	}
	tb.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))

	ws := workerstest.IdleSleepers(tb, n)
	pids := make(map[int64]bool, n)
	deadline := time.Now().Add(10 * time.Second)
	for i := range ws {
		if err := waitExec(ws[i], name, deadline); err != nil {
			tb.Fatal(err)
		}
		pids[int64(ws[i].PID)] = true
	}
	return ws, name, pids
}

// waitExec waits until w's process runs as name with its marker set to
// its ID (the script has exec'd).
func waitExec(w workers.WorkerSnapshot, name string, deadline time.Time) error {
	proc := "/proc/" + strconv.Itoa(w.PID)
	marker := []byte(workers.MarkerEnv + "=" + w.ID)
	for {
		comm, err := os.ReadFile(proc + "/comm")
		if err != nil {
			return fmt.Errorf("worker %s: %w", w.ID, err)
		}
		env, err := os.ReadFile(proc + "/environ")
		if err != nil {
			return fmt.Errorf("worker %s: %w", w.ID, err)
		}
		if strings.TrimSpace(string(comm)) == name && bytes.Contains(append([]byte{0}, env...), append(append([]byte{0}, marker...), 0)) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("worker %s (pid %d) runs as %q without its marker, not as %q", w.ID, w.PID, strings.TrimSpace(string(comm)), name)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
