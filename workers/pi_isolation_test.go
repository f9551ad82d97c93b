//go:build linux

package workers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/workerscope/workerscope/internal/modelstub"
	"github.com/workerscope/workerscope/internal/sandbox"
	"github.com/workerscope/workerscope/internal/testutil"
)

// piForIsolation finds pi like TestRealPi does, and for worker uids a copy
// every uid can run: the npm prefix is hard-linked (cp -al; copied when
// that fails) into a world-readable directory when it lives under a 0700
// home.
func piForIsolation(t *testing.T, uids bool) string {
	t.Helper()
	pi, err := exec.LookPath("pi")
	if err != nil {
		if os.Getenv("WORKERSCOPE_PI") == "required" || isolationRequired() {
			t.Fatal("pi not on PATH")
		}
		t.Skip("pi not on PATH; install with: npm install -g @mariozechner/pi-coding-agent@0.73.1")
	}
	if pi, err = filepath.Abs(pi); err != nil {
		t.Fatal(err)
	}
	if !uids || sandbox.OthersCanExec(pi) == nil {
		return pi
	}
	i := strings.Index(pi, "/node_modules/")
	if i < 0 {
		t.Fatalf("pi at %s is not in an npm prefix and worker uids cannot run it: %v", pi, sandbox.OthersCanExec(pi))
	}
	prefix := pi[:i]
	dst := filepath.Join(publicDir(t), "pi")
	if out, err := exec.Command("cp", "-al", prefix, dst).CombinedOutput(); err != nil {
		t.Logf("cp -al: %v %s; copying", err, out)
		_ = os.RemoveAll(dst)
		if out, err := exec.Command("cp", "-a", prefix, dst).CombinedOutput(); err != nil {
			t.Fatalf("cp -a: %v %s", err, out)
		}
	}
	if err := os.Chmod(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dst, pi[i+1:])
}

// TestRealPiIsolated runs the real `pi --mode rpc` under tier 2, tier 3
// and both: its bash tool writes and reads a file in its own directory
// (its HOME and working directory), while a write into the repository
// fails, and a stop leaves nothing running as its uid.
func TestRealPiIsolated(t *testing.T) {
	for _, tc := range []struct {
		name           string
		uids, landlock bool
	}{
		{"uids", true, false},
		{"landlock", false, true},
		{"uids+landlock", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			needIsolation(t, tc.uids, tc.landlock)
			pi := piForIsolation(t, tc.uids)
			cfg := isoConfig(t, pi, tc.uids, tc.landlock)
			// A scripted model: the prompt's run asks for pi's bash tool,
			// which writes in the worker's own directory, then answers.
			model := modelstub.Start([]modelstub.Reply{
				{ToolCalls: []modelstub.ToolCall{{ID: "call_write", Name: "bash", Arguments: map[string]any{"command": "echo from-the-agent > g && cat g"}}},
					Usage: modelstub.Usage{Prompt: 100, Completion: 10}},
				{Text: "written", Usage: modelstub.Usage{Prompt: 120, Completion: 2}},
			})
			t.Cleanup(model.Close)
			agentDir := filepath.Join(publicDir(t), "agent")
			env, err := modelstub.PiAgentDir(agentDir, model.URL, "scripted", "m1", modelstub.Price{Input: 3, Output: 15})
			if err != nil {
				t.Fatal(err)
			}
			cfg.Command = []string{pi, "--mode", "rpc", "--no-session", "--provider", "scripted", "--model", "m1"}
			cfg.Env = env
			cfg.SandboxReadOnly = append(cfg.SandboxReadOnly, agentDir)
			if tc.landlock {
				u, _ := url.Parse(model.URL)
				port, _ := strconv.ParseUint(u.Port(), 10, 16)
				cfg.AllowConnectPorts = append(cfg.AllowConnectPorts, uint16(port))
			}
			cfg.SandboxHelper = []string{publicExe(t)}
			cfg.StopGrace = 3 * time.Second
			m := newManager(t, cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			call := func(cmd string) map[string]any {
				t.Helper()
				raw, err := m.Send(ctx, "pi", []byte(cmd))
				if err != nil {
					t.Fatalf("%s: %v", cmd, err)
				}
				var r map[string]any
				if err := json.Unmarshal(raw, &r); err != nil || r["success"] != true {
					t.Fatalf("%s: %s %v", cmd, raw, err)
				}
				data, _ := r["data"].(map[string]any)
				return data
			}
			call(`{"type":"get_state"}`)
			if out := call(`{"type":"bash","command":"echo hi > f && cat f"}`); out["output"] != "hi\n" {
				t.Fatalf("bash in its own directory: %v", out)
			}
			w, _ := snapshotOf(m, "pi")
			if _, err := os.Stat(filepath.Join(cfg.WorkerDirRoot, w.ID, "f")); err != nil {
				t.Fatalf("pi's file is not in its directory: %v", err)
			}
			// An agent turn: the model's tool call runs inside the tier too.
			call(`{"type":"prompt","message":"write g"}`)
			testutil.Eventually(t, 60*time.Second, "the agent's bash tool to write g in its directory", func() bool {
				b, err := os.ReadFile(filepath.Join(cfg.WorkerDirRoot, w.ID, "g"))
				return err == nil && string(b) == "from-the-agent\n"
			})
			testutil.Eventually(t, 30*time.Second, "the run's second model call (after the tool)", func() bool { return model.Calls() >= 2 })
			wd, _ := os.Getwd()
			target := filepath.Join(wd, fmt.Sprintf("pi-pwned-%d", os.Getpid()))
			t.Cleanup(func() { _ = os.Remove(target) })
			out := call(fmt.Sprintf(`{"type":"bash","command":"echo x > %s"}`, target))
			if _, err := os.Stat(target); err == nil || out["exitCode"] == float64(0) {
				t.Fatalf("pi wrote into the repository: %v (stat %v)", out, err)
			}
			t.Logf("write outside: %v", out)
			if tc.uids && (w.UID == 0 || len(uidProcs(t, w.UID)) == 0) {
				t.Fatalf("pi does not run as its uid: %+v", w)
			}
			if err := m.Stop(ctx, "pi"); err != nil {
				t.Fatal(err)
			}
			if tc.uids {
				if left := uidProcs(t, w.UID); len(left) > 0 {
					t.Fatalf("processes of pi's uid left: %v", left)
				}
			}
			if left := treeOf(t, w.ID); len(left) > 0 {
				t.Fatalf("pi's tree left: %v", left)
			}
		})
	}
}
