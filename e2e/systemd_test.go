//go:build linux

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemdUnitVerifies runs `systemd-analyze verify` on the shipped
// unit. verify exits 0 even for unknown keys (it warns and ignores them,
// as systemd itself would), so any output at all fails the test. The
// binary and EnvironmentFile paths are pointed at ones that exist here.
// Skips where systemd-analyze is not installed (CI does not install
// systemd for this check alone).
func TestSystemdUnitVerifies(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed; skipping the unit check")
	}
	unit, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "systemd", "workerscope.service"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	env := filepath.Join(dir, "workerscope.env")
	example := filepath.Join(repoRoot(t), "deploy", "systemd", "workerscope.env.example")
	if b, err := os.ReadFile(example); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(env, b, 0o600); err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer(
		"/usr/local/bin/workerscope", "/bin/true",
		"/etc/workerscope/workerscope.env", env,
	).Replace(string(unit))
	path := filepath.Join(dir, "workerscope.service")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sa, "verify", path)
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_COLOR=0", "SYSTEMD_PAGER=")
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, want := range []string{"Delegate=yes", "KillMode=mixed", "Restart=on-failure", "EnvironmentFile=", "OOMPolicy=continue"} {
		if !strings.Contains(string(unit), "\n"+want) {
			t.Errorf("the unit lacks %s", want)
		}
	}
}
