//go:build linux

package workers

import (
	"os/exec"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/workerscope/workerscope/internal/testutil"
)

// testWatcher is a new exit watcher, closed at the test's end (close may
// come earlier too); the test is skipped where there can be none.
func testWatcher(t *testing.T) *exitWatcher {
	t.Helper()
	x := newExitWatcher(testutil.QuietLogger())
	if x == nil {
		t.Skip("no exit watcher here (no epoll set the runtime can poll)")
	}
	t.Cleanup(x.close)
	return x
}

// TestExitWatcher: the watcher runs a child's onExit once it has exited
// (whether before or after it was watched), never while it lives; Close
// hands the children it still watches back at once (they then wait as
// before). Each onExit runs once.
func TestExitWatcher(t *testing.T) {
	t.Parallel()
	x := testWatcher(t)
	start := func(t *testing.T, args ...string) *exec.Cmd {
		t.Helper()
		c := exec.Command(args[0], args[1:]...)
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
		return c
	}
	watch := func(t *testing.T, c *exec.Cmd) <-chan struct{} {
		t.Helper()
		fired := make(chan struct{})
		if !x.watch(c.Process.Pid, func() { close(fired) }) { // a second call would panic
			t.Skip("no pidfds here (Linux before 5.3)")
		}
		return fired
	}
	fired := func(ch <-chan struct{}, within time.Duration) bool {
		select {
		case <-ch:
			return true
		case <-time.After(within):
			return false
		}
	}

	live := start(t, "sleep", "3600")
	liveFired := watch(t, live)
	early := start(t, "true")
	time.Sleep(200 * time.Millisecond) // exited before it is watched
	earlyFired := watch(t, early)
	killed := start(t, "sleep", "3600")
	killedFired := watch(t, killed)

	if !fired(earlyFired, 10*time.Second) {
		t.Error("a child that had already exited was not reported")
	}
	if fired(killedFired, 200*time.Millisecond) || fired(liveFired, 0) {
		// Say how it ended: a signal from elsewhere is not the watcher's fault.
		for _, c := range []*exec.Cmd{killed, live} {
			var ws unix.WaitStatus
			if got, err := unix.Wait4(c.Process.Pid, &ws, unix.WNOHANG, nil); got == c.Process.Pid {
				t.Logf("pid %d: exited %v status %d, signaled %v signal %v", got, ws.Exited(), ws.ExitStatus(), ws.Signaled(), ws.Signal())
			} else {
				t.Logf("pid %d: still running (wait4 %d %v)", c.Process.Pid, got, err)
			}
		}
		t.Fatal("a live child was reported as exited")
	}
	_ = killed.Process.Kill()
	if !fired(killedFired, 10*time.Second) {
		t.Error("a killed child was not reported")
	}
	if err := killed.Wait(); err == nil {
		t.Error("the killed child's wait reports success")
	}

	x.close()
	if !fired(liveFired, 10*time.Second) {
		t.Error("close did not hand back the child it still watched")
	}
	if x.watch(live.Process.Pid, func() {}) {
		t.Error("a closed watcher accepted a child")
	}
}

// TestExitWatcherManyAtOnce: exits that arrive together, more than one
// batch of the epoll set, are each reported once (a Manager's Close stops
// every worker at once).
func TestExitWatcherManyAtOnce(t *testing.T) {
	t.Parallel()
	x := testWatcher(t)
	const n = 200 // over three batches
	var cmds []*exec.Cmd
	t.Cleanup(func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	})
	fired := make(chan int, 2*n)
	for i := range n {
		c := exec.Command("sleep", "3600")
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, c)
		if !x.watch(c.Process.Pid, func() { fired <- i }) {
			t.Skip("no pidfds here (Linux before 5.3)")
		}
	}
	for _, c := range cmds {
		_ = c.Process.Kill()
	}
	seen := make(map[int]bool)
	timeout := time.After(30 * time.Second)
	for len(seen) < n {
		select {
		case i := <-fired:
			if seen[i] {
				t.Fatalf("child %d reported twice", i)
			}
			seen[i] = true
		case <-timeout:
			t.Fatalf("%d of %d exits reported", len(seen), n)
		}
	}
	select {
	case i := <-fired:
		t.Fatalf("child %d reported again", i)
	case <-time.After(100 * time.Millisecond):
	}
}

// TestExitWatcherForgetsAnExitedPidfd: once a child's exit has been
// reported, a live child whose pidfd gets the same number is not reported
// with it, even while a copy of the first pidfd lives on elsewhere (as in
// a child forked by another goroutine that has not exec'd yet). epoll keeps
// a descriptor's entry until its open file is released, so closing the
// pidfd alone left the exited child's entry ready under the number.
func TestExitWatcherForgetsAnExitedPidfd(t *testing.T) {
	t.Parallel()
	x := testWatcher(t)
	start := func() *exec.Cmd {
		c := exec.Command("sleep", "3600")
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
		return c
	}
	// watch watches c and says which pidfd the watcher took for it.
	watch := func(c *exec.Cmd, onExit func()) int32 {
		t.Helper()
		x.mu.Lock()
		before := make(map[int32]bool, len(x.pending))
		for fd := range x.pending {
			before[fd] = true
		}
		x.mu.Unlock()
		if !x.watch(c.Process.Pid, onExit) {
			t.Skip("no pidfds here (Linux before 5.3)")
		}
		x.mu.Lock()
		defer x.mu.Unlock()
		for fd := range x.pending {
			if !before[fd] {
				return fd
			}
		}
		t.Fatalf("no new pidfd for %d", c.Process.Pid)
		return -1
	}

	first := start()
	firstFired := make(chan struct{})
	fd := watch(first, func() { close(firstFired) })
	// The copy a forked child would hold: the open file outlives the pidfd.
	held, err := unix.Dup(int(fd))
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(held)
	_ = first.Process.Kill()
	select {
	case <-firstFired:
	case <-time.After(10 * time.Second):
		t.Fatal("the killed child was not reported")
	}

	// The next pidfd takes the lowest free number: the one just closed,
	// unless another test's descriptor took it first; try a few children.
	for range 8 {
		c := start()
		fired := make(chan struct{})
		if watch(c, func() { close(fired) }) != fd {
			continue
		}
		select {
		case <-fired:
			t.Fatal("a live child was reported as exited: the exited child's entry was still in the set under its number")
		case <-time.After(300 * time.Millisecond):
		}
		return
	}
	t.Skip("the exited child's pidfd number was not reused by the children started after it")
}
