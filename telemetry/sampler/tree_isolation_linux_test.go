//go:build linux

package sampler

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/workerscope/workerscope/internal/sandbox"
	"github.com/workerscope/workerscope/internal/testutil"
	"github.com/workerscope/workerscope/workers"
	"github.com/workerscope/workerscope/workers/demoworker"
	"github.com/workerscope/workerscope/workers/workerstest"
)

// TestTreeAcrossWorkerUIDs: the sampler measures a worker tree that runs
// as its own uid inside the Landlock sandbox — by the environment marker
// (watchdog tier, no cgroups) and by cgroup membership — the worker and
// its child, with CPU and memory.
func TestTreeAcrossWorkerUIDs(t *testing.T) {
	abi, err := sandbox.ABI()
	if os.Geteuid() != 0 || err != nil || abi < sandbox.MinABI {
		if os.Getenv("WORKERSCOPE_ISOLATION") == "required" {
			t.Fatalf("needs root and Landlock ABI %d (have %d, %v)", sandbox.MinABI, abi, err)
		}
		t.Skip("needs root and Landlock ABI 6")
	}
	for _, mode := range []workers.CgroupMode{workers.CgroupsOff, workers.CgroupsAuto} {
		t.Run(string(mode), func(t *testing.T) {
			exe := testutil.PublicExe(t)
			first := 1_700_000_000 + uint32(os.Getpid()%20000)*1000
			if mode == workers.CgroupsAuto {
				first += 16
			}
			m := workerstest.NewDemoManager(t, func(c *workers.Config) {
				c.Command, c.Env, c.SandboxHelper = []string{exe}, []string{demoworker.RoleEnv + "=worker"}, []string{exe}
				c.WorkerUIDs = sandbox.UIDRange{First: first, Last: first + 3}
				c.WorkerDirRoot = filepath.Join(testutil.PublicDir(t), "w")
				c.Sandbox = sandbox.ModeRequired
				c.Cgroups = mode
				c.RuntimeDir = t.TempDir()
			})
			s, err := New(m, Options{MinInterval: time.Nanosecond})
			if err != nil {
				t.Fatal(err)
			}
			workerstest.MustSend(t, m, "k", `{"type":"prompt","cpu_ms":200,"child_ms":20000,"child_cpu_ms":100,"events":0}`)
			var last string
			testutil.Eventually(t, 10*time.Second, "the isolated tree measured", func() bool {
				for _, w := range s.Report(context.Background()).Workers {
					last = fmt.Sprintf("uid %d: processes %d, cpu %.2fs, rss %d, err %v, partial %v", w.UID, w.Processes, w.CPUUser+w.CPUSystem, w.RSSBytes, w.Err, w.Partial)
					if w.Key == "k" && w.Err == nil && w.Processes == 2 && w.CPUUser+w.CPUSystem > 0 && w.RSSBytes > 0 && w.Partial == nil {
						return true
					}
				}
				return false
			})
			t.Log(last)
		})
	}
}
