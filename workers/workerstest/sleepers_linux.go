package workerstest

import (
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/workerscope/workerscope/internal/procfs"
	"github.com/workerscope/workerscope/workers"
)

// IdleSleepers starts n idle processes (sleep 3600) that stand in for
// workers in benchmarks, each carrying its marker, and returns their
// snapshots. They are killed at cleanup.
//
// Each call's IDs are its own (w<8 random hex digits>-<n>, the form of the
// binary's IDs), so benchmarks running at once on one machine never count
// each other's sleepers as members of their trees.
func IdleSleepers(tb testing.TB, n int) []workers.WorkerSnapshot {
	tb.Helper()
	prefix := fmt.Sprintf("w%08x-", rand.Uint32())
	r := procfs.NewReader("")
	ws := make([]workers.WorkerSnapshot, 0, n)
	cmds := make([]*exec.Cmd, 0, n)
	tb.Cleanup(func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	})
	for i := 0; i < n; i++ {
		id := prefix + strconv.Itoa(i)
		c := exec.Command("sleep", "3600")
		c.Env = []string{workers.MarkerEnv + "=" + id}
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			tb.Fatal(err)
		}
		cmds = append(cmds, c)
		st, err := r.ReadStat(c.Process.Pid)
		if err != nil {
			tb.Fatal(err)
		}
		ws = append(ws, workers.WorkerSnapshot{ID: id, Key: "k" + strconv.Itoa(i), PID: c.Process.Pid,
			StartTicks: st.StartTime, StartedAt: time.Now(), State: workers.StateIdle})
	}
	return ws
}
