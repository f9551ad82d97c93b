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

// TestScannerSkipsForeignButSeesNewTrees checks the foreign-process cache:
// unrelated processes are skipped after one read, and a worker that starts
// later is still seen whole, orphans included.
func TestScannerSkipsForeignButSeesNewTrees(t *testing.T) {
	foreign := exec.Command("sleep", "30")
	if err := foreign.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { foreign.Process.Kill(); foreign.Wait() })
	s := NewScanner("", "TEST_MARKER")
	s.SkipForeign, s.RecheckEvery = true, 1000
	pass := func(roots []Root) [][]int {
		if err := s.Scan(); err != nil {
			t.Fatal(err)
		}
		return s.Attribute(roots, 0, nil)
	}
	pass(nil)
	pass(nil)
	if s.Skipped() == 0 || s.Lookup(foreign.Process.Pid) >= 0 {
		t.Fatalf("foreign process not skipped (skipped %d)", s.Skipped())
	}
	time.Sleep(50 * time.Millisecond) // start times have a 10 ms resolution
	cmd := exec.Command("sh", "-c", "sleep 30 & (setsid sleep 31 &); wait")
	cmd.Env = append(os.Environ(), "TEST_MARKER=tree-2")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pids []int
	t.Cleanup(func() {
		for _, p := range pids {
			syscall.Kill(p, syscall.SIGKILL)
		}
		cmd.Process.Kill()
		cmd.Wait()
	})
	// An unrelated pass first: the new shell and its children are read and
	// recorded as foreign, as they would be by a pass that ran before the
	// supervisor registered the worker.
	time.Sleep(100 * time.Millisecond)
	pass(nil)
	st, err := s.Reader().ReadStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	roots := []Root{{PID: cmd.Process.Pid, StartTime: st.StartTime, Marker: "tree-2"}}
	// The very first pass with the new root already sees its whole tree,
	// although the last pass recorded those processes as foreign.
	first := true
	deadline := time.Now().Add(5 * time.Second)
	for {
		trees := pass(roots)
		pids = pids[:0]
		for _, i := range trees[0] {
			pids = append(pids, s.Procs()[i].PID)
		}
		if len(pids) == 3 {
			break
		}
		if first {
			t.Errorf("first pass with the new root saw %v, want 3 processes", pids)
			first = false
		}
		if time.Now().After(deadline) {
			t.Fatalf("tree %v, want the shell and both sleeps", pids)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if s.Lookup(foreign.Process.Pid) >= 0 {
		t.Fatal("the unrelated process was read again")
	}
}

// TestScannerKeepsTreeStatFilesOpen: with KeepOpen, a tree member's stat
// file stays open between scans and reads the same values as a fresh
// open; foreign processes are not kept; a member that exits (even with its
// PID reused) is read afresh and its file closed; the budget holds; Close
// releases everything.
func TestScannerKeepsTreeStatFilesOpen(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 30 & sleep 31 & wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Process.Kill(); cmd.Wait() })
	s := NewScanner("", "")
	s.SkipForeign, s.RecheckEvery, s.KeepOpen = true, 30, 64
	t.Cleanup(s.Close)
	roots := []Root{{PID: cmd.Process.Pid}}
	var tree []int
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := s.Scan(); err != nil {
			t.Fatal(err)
		}
		tree = s.Attribute(roots, 0, nil)[0]
		if len(tree) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tree has %d processes, want 3", len(tree))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// One more scan: the tree's three, found by the last Attribute, are
	// opened and kept; foreign processes are not.
	if err := s.Scan(); err != nil {
		t.Fatal(err)
	}
	tree = s.Attribute(roots, 0, nil)[0]
	if got := s.OpenFiles(); got != 3 {
		t.Fatalf("%d stat files kept open, want the tree's 3", got)
	}
	fresh := NewReader("")
	for _, i := range tree {
		kept := s.Procs()[i]
		want, err := fresh.ReadStat(kept.PID)
		if err != nil {
			t.Fatal(err)
		}
		if kept.PID != want.PID || kept.PPID != want.PPID || kept.StartTime != want.StartTime || kept.State != want.State {
			t.Errorf("kept read %+v, fresh read %+v", kept, want)
		}
	}
	victim := s.Procs()[tree[1]].PID
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		if err := s.Scan(); err != nil {
			t.Fatal(err)
		}
		tree = s.Attribute(roots, 0, nil)[0]
		if _, member := s.open[victim]; !member && len(tree) == 2 && s.OpenFiles() == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the killed member %d still read (tree %d, open %v)", victim, len(tree), s.open[victim])
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.KeepOpen = 1
	s.Close()
	for range 2 {
		if err := s.Scan(); err != nil {
			t.Fatal(err)
		}
		s.Attribute(roots, 0, nil)
	}
	if got := s.OpenFiles(); got != 1 {
		t.Fatalf("%d stat files open with a budget of 1", got)
	}
	s.Close()
	if got := s.OpenFiles(); got != 0 {
		t.Fatalf("%d stat files open after Close", got)
	}
}
