//go:build linux

package workers_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/workerscope/workerscope/internal/testutil"

	"github.com/workerscope/workerscope/workers"
)

// TestRealPi runs the real coding agent, `pi --mode rpc`, when it is on
// PATH (.ci/run installs it): round trips, a bash command that leaves
// background jobs re-parented away from pi (one of them in a new session),
// and a stop that must leave none of them behind.
func TestRealPi(t *testing.T) {
	pi, err := exec.LookPath("pi")
	if err != nil {
		if os.Getenv("WORKERSCOPE_PI") == "required" { // as in CI
			t.Fatal("pi not on PATH")
		}
		t.Skip("pi not on PATH; install with: npm install -g @mariozechner/pi-coding-agent@0.73.1")
	}
	home := t.TempDir()
	m := newManager(t, workers.Config{
		Command:   []string{pi, "--mode", "rpc", "--no-session"},
		Env:       []string{"HOME=" + home, "PI_CODING_AGENT_DIR=" + home + "/.pi/agent"},
		Dir:       home,
		StopGrace: 3 * time.Second,
		Logger:    quietLogger(t),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	call := func(cmd string) map[string]any {
		t.Helper()
		raw, err := m.Send(ctx, "pi-session", []byte(cmd))
		if err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		var r map[string]any
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatal(err)
		}
		if r["success"] != true {
			t.Fatalf("%s: %s", cmd, raw)
		}
		return r
	}
	st := call(`{"type":"get_state","id":"caller-7"}`)
	if st["id"] != "caller-7" || st["data"] == nil {
		t.Fatalf("get_state: %v", st)
	}
	call(`{"type":"get_commands"}`)
	out := call(`{"type":"bash","command":"echo hi"}`)
	if data, _ := out["data"].(map[string]any); data["output"] != "hi\n" {
		t.Fatalf("bash echo: %v", out)
	}
	call(`{"type":"bash","command":"sleep 300 &"}`)
	call(`{"type":"bash","command":"setsid sleep 301 &"}`)

	w, _ := snapshotOf(m, "pi-session")
	var tree []int
	testutil.Eventually(t, 10*time.Second, "pi's background jobs attributed to its worker", func() bool {
		tree = treeOf(t, w.ID)
		return len(tree) >= 3 // pi and both sleeps
	})
	if !slices.Contains(tree, w.PID) {
		t.Fatalf("tree %v lacks pi itself (%d)", tree, w.PID)
	}
	if err := m.Stop(ctx, "pi-session"); err != nil {
		t.Fatal(err)
	}
	for _, pid := range tree {
		if alive(pid) {
			t.Errorf("pid %d of pi's tree survived Stop", pid)
		}
	}
}
