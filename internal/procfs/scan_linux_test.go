//go:build linux

package procfs

import (
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"
)

// TestScannerAttributesOrphansByMarker starts a real shell whose children
// stay, setsid away, and orphan themselves, and checks all are found.
func TestScannerAttributesOrphansByMarker(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 30 & setsid sleep 31 & (sleep 32 &); wait")
	cmd.Env = append(os.Environ(), "TEST_MARKER=tree-1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := NewScanner("", "TEST_MARKER")
	roots := []Root{{PID: cmd.Process.Pid, Marker: "tree-1"}, {PID: 0, Marker: "other"}}
	var pids []int
	t.Cleanup(func() {
		for _, p := range pids {
			syscall.Kill(p, syscall.SIGKILL)
		}
		cmd.Process.Kill()
		cmd.Wait()
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := s.Scan(); err != nil {
			t.Fatal(err)
		}
		trees := s.Attribute(roots, 0, nil)
		pids = pids[:0]
		for _, i := range trees[0] {
			pids = append(pids, s.Procs()[i].PID)
		}
		if len(trees[1]) != 0 {
			t.Fatalf("foreign tree got %d processes", len(trees[1]))
		}
		if len(pids) == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tree = %v, want 4 processes", pids)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if pids[0] != cmd.Process.Pid {
		t.Fatalf("root not first: %v", pids)
	}
	self := s.Lookup(os.Getpid())
	if self < 0 || slices.Contains(pids, os.Getpid()) {
		t.Fatalf("self misattributed (index %d) in %v", self, pids)
	}
	if s.EnvCacheLen() == 0 {
		t.Fatal("marker look-ups were not cached")
	}
	// A reused PID guard: a wrong start time disowns the root.
	trees := s.Attribute([]Root{{PID: cmd.Process.Pid, StartTime: 1}}, 0, nil)
	if len(trees[0]) != 0 {
		t.Fatalf("root with wrong start time attributed: %v", trees[0])
	}
}

func TestReaderCountFDs(t *testing.T) {
	r := NewReader("")
	n, err := r.CountFDs(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := r.CountFDs(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m != n+1 {
		t.Fatalf("fds %d then %d after one open", n, m)
	}
	if _, err := r.ReadStat(1 << 30); !isGone(err) {
		t.Fatalf("missing pid: err = %v", err)
	}
}
