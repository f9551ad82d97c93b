//go:build linux

package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// minLandlockABI is what --worker-sandbox required needs (signal scoping,
// Linux 6.12); internal/sandbox.MinABI, spelt here since e2e imports
// nothing of the project but the metric contract.
const minLandlockABI = 6

// landlockABI asks the kernel for its Landlock ABI version
// (landlock_create_ruleset with LANDLOCK_CREATE_RULESET_VERSION).
func landlockABI() (int, error) {
	v, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, 1)
	if errno != 0 {
		return 0, errno
	}
	return int(v), nil
}

// needRootAndLandlock skips a test without root or Landlock ABI 6; CI sets
// WORKERSCOPE_ISOLATION=required, where that fails instead.
func needRootAndLandlock(t *testing.T) {
	t.Helper()
	var why string
	if os.Geteuid() != 0 {
		why = "per-worker uids need root"
	} else if abi, err := landlockABI(); err != nil || abi < minLandlockABI {
		why = fmt.Sprintf("Landlock ABI %d+ needed (have %d, %v)", minLandlockABI, abi, err)
	}
	if why == "" {
		return
	}
	if os.Getenv("WORKERSCOPE_ISOLATION") == "required" {
		t.Fatal(why + " (WORKERSCOPE_ISOLATION=required)")
	}
	t.Skip(why)
}

// publicBinary builds the binary and copies it where every uid can run
// it (t.TempDir is under a 0700 directory).
func publicBinary(t *testing.T) (bin, dir string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "workerscope-e2e-iso-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(workerscopeBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	bin = filepath.Join(dir, "workerscope")
	if err := os.WriteFile(bin, src, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, dir
}

// e2eUIDs is a uid range of this test process alone.
func e2eUIDs(name string) (first, last uint32) {
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	first = 1_600_000_000 + uint32(os.Getpid()%20000)*1000 + (h.Sum32()%60)*16
	return first, first + 7
}

var isolationLogRE = regexp.MustCompile(`level=INFO msg="worker isolation" component=workers tiers=uids,landlock sandbox=required landlock_abi=\d+`)

// TestIsolationThroughTheBinary starts the real binary with --worker-uids
// and --worker-sandbox required the way an operator would, checks the
// start-up line, then plays a hostile worker through the HTTP API: it
// cannot read another session's environment, kill it or the supervisor,
// write into /etc or reach the API port — and every session keeps
// serving. /api/workers shows each worker's uid, /api/metrics the tiers.
func TestIsolationThroughTheBinary(t *testing.T) {
	needRootAndLandlock(t)
	bin, dir := publicBinary(t)
	first, last := e2eUIDs(t.Name())
	uids := fmt.Sprintf("%d-%d", first, last)
	p := start(t, bin, []string{"WORKERSCOPE_TOKEN=" + token, "OTEL_SDK_DISABLED=true"},
		"--listen", "127.0.0.1:0", "--demo-load=false", "--stop-grace", "2s",
		"--worker-uids", uids, "--worker-sandbox", "required", "--worker-dir-root", filepath.Join(dir, "workers"))
	a := &app{proc: p, url: waitServing(t, p)}
	t.Cleanup(func() { a.stop(t, 15*time.Second) })
	if !isolationLogRE.MatchString(p.output()) || !strings.Contains(p.output(), "uids="+uids) {
		t.Fatalf("no start-up line naming the isolation tiers:\n%s", p.output())
	}

	rpc := func(key, cmd string) map[string]any {
		t.Helper()
		code, body := a.do(t, "POST", "/api/sessions/"+key+"/rpc", cmd)
		var r map[string]any
		if code != 200 || json.Unmarshal(body, &r) != nil || r["success"] != true {
			t.Fatalf("%s to %s: %d %s", cmd, key, code, body)
		}
		d, _ := r["data"].(map[string]any)
		return d
	}
	vpid := int(rpc("victim", `{"type":"get_state"}`)["pid"].(float64))
	rpc("attacker", `{"type":"get_state"}`)
	u, _ := url.Parse(a.url)
	stamp := fmt.Sprint(os.Getpid())
	t.Cleanup(func() { _ = os.Remove("/etc/workerscope-e2e-pwned-" + stamp) })
	for _, tc := range []struct{ what, cmd string }{
		{"read the victim's environment", fmt.Sprintf(`{"type":"exec","argv":["cat","/proc/%d/environ"]}`, vpid)},
		{"kill the victim", fmt.Sprintf(`{"type":"exec","argv":["/bin/sh","-c","kill -9 %d"]}`, vpid)},
		{"kill the supervisor", fmt.Sprintf(`{"type":"exec","argv":["/bin/sh","-c","kill -9 %d"]}`, p.cmd.Process.Pid)},
		{"write into /etc", `{"type":"exec","argv":["/bin/sh","-c","echo x > /etc/workerscope-e2e-pwned-` + stamp + `"]}`},
	} {
		d := rpc("attacker", tc.cmd)
		if d["code"] == float64(0) {
			t.Errorf("%s: succeeded: %v", tc.what, d)
		} else {
			t.Logf("%s: refused: %v", tc.what, strings.TrimSpace(fmt.Sprint(d["stderr"])))
		}
	}
	if d := rpc("attacker", `{"type":"dial","addr":"`+u.Host+`"}`); d["connected"] != false {
		t.Errorf("the attacker reached the API port %s: %v", u.Host, d)
	}
	if pid := int(rpc("victim", `{"type":"get_state"}`)["pid"].(float64)); pid != vpid {
		t.Errorf("victim pid %d, want %d", pid, vpid)
	}
	rpc("attacker", `{"type":"get_state"}`)

	code, body := a.do(t, "GET", "/api/workers", "")
	var ws struct {
		Workers []struct {
			Key       string `json:"key"`
			UID       *int   `json:"uid"`
			Sandboxed bool   `json:"sandboxed"`
		} `json:"workers"`
	}
	if code != 200 || json.Unmarshal(body, &ws) != nil || len(ws.Workers) != 2 {
		t.Fatalf("/api/workers: %d %s", code, body)
	}
	for _, w := range ws.Workers {
		if w.UID == nil || *w.UID < int(first) || *w.UID > int(last) || !w.Sandboxed {
			t.Errorf("/api/workers entry %+v: want a uid in %s and sandboxed", w, uids)
		}
	}
	code, body = a.do(t, "GET", "/api/metrics", "")
	var rep struct {
		Isolation struct {
			Tiers []string `json:"tiers"`
			UIDs  string   `json:"uids"`
		} `json:"isolation"`
	}
	if code != 200 || json.Unmarshal(body, &rep) != nil || strings.Join(rep.Isolation.Tiers, ",") != "uids,landlock" || rep.Isolation.UIDs != uids {
		t.Fatalf("/api/metrics isolation: %d %+v", code, rep.Isolation)
	}
}

// TestIsolationRefusedWithoutPrivilege: the binary started by an
// unprivileged user with --worker-uids exits at once, saying what it lacks.
func TestIsolationRefusedWithoutPrivilege(t *testing.T) {
	needRootAndLandlock(t)
	bin, dir := publicBinary(t)
	first, _ := e2eUIDs(t.Name())
	user := first + 100 // outside the range below
	cmd := exec.Command(bin, "--listen", "127.0.0.1:0", "--worker-uids", fmt.Sprintf("%d-%d", first, first+7),
		"--worker-dir-root", filepath.Join(dir, "workers"))
	cmd.Env = append(os.Environ(), "WORKERSCOPE_TOKEN="+token, "OTEL_SDK_DISABLED=true", "XDG_RUNTIME_DIR="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: user, Gid: user, Groups: []uint32{}}, Pdeathsig: syscall.SIGKILL}
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("the binary kept running without the privilege:\n%s", out)
	}
	var xe *exec.ExitError
	if !errors.As(err, &xe) || xe.ExitCode() != 1 || !strings.Contains(string(out), "lacks CAP_SETUID") {
		t.Fatalf("exit %v, output:\n%s", err, out)
	}
	t.Log(strings.TrimSpace(string(out)))
}
