//go:build linux

package workers

import (
	"errors"
	"log/slog"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// exitWatcher learns of every worker's exit with no goroutine or thread
// per worker: the workers' pidfds sit in one epoll set, whose descriptor
// the runtime polls like a socket, and one goroutine wakes when any of
// them has exited. Before it, each worker's wait goroutine sat in waitid,
// a blocking system call that holds an OS thread (its signal stack, its
// system stack, the runtime's M: about 45 KiB per idle worker, issue 22).
type exitWatcher struct {
	log  *slog.Logger
	ep   *os.File // the epoll set
	epfd int      // its descriptor (watch uses it under mu, before closed)
	rc   syscall.RawConn
	done chan struct{} // closed when loop has returned

	mu      sync.Mutex
	pending map[int32]func() // by pidfd: what to run once its process has exited
	closed  bool             // watch refuses; loop hands what is left back
}

// newExitWatcher starts the watcher, or returns nil (each worker's wait
// then blocks, as before) when the epoll set cannot be made or polled.
func newExitWatcher(log *slog.Logger) *exitWatcher {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		log.Debug("no exit watcher; each worker's wait holds a thread", "err", err)
		return nil
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return nil
	}
	ep := os.NewFile(uintptr(fd), "epoll")
	rc, err := ep.SyscallConn()
	if err != nil {
		_ = ep.Close()
		return nil
	}
	x := &exitWatcher{log: log, ep: ep, epfd: fd, rc: rc, done: make(chan struct{}), pending: make(map[int32]func())}
	go x.loop()
	return x
}

// watch runs onExit (on the watcher's goroutine: it must not block) once
// the child pid, not yet waited for, has exited. It reports false when it
// cannot: no watcher, closed, or no pidfd (Linux before 5.3).
func (x *exitWatcher) watch(pid int, onExit func()) bool {
	if x == nil {
		return false
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return false
	}
	// Only the Manager waits for its workers, so pid cannot be reused
	// before the pidfd is open.
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return false
	}
	// Level-triggered: a process that has already exited is reported at once.
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
	if err := unix.EpollCtl(x.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		_ = unix.Close(fd)
		return false
	}
	x.pending[int32(fd)] = onExit
	return true
}

// loop waits for the epoll set to be readable and runs the exits it
// reports, until the set is closed (or turns out not to be pollable):
// then every worker still watched gets its onExit at once, and waits as
// before.
func (x *exitWatcher) loop() {
	defer close(x.done)
	events := make([]unix.EpollEvent, 64)
	var ready []int32
	var waitErr error
	// collect takes one batch of exits. The set is level-triggered: the
	// pidfds of a batch stay ready until fire closes them, so collect must
	// not ask again before they are fired (it would get them again), and
	// whatever did not fit in the batch comes with the next call, which
	// rc.Read makes at once, before waiting.
	collect := func(fd uintptr) bool {
		for {
			n, err := unix.EpollWait(int(fd), events, 0)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				waitErr = os.NewSyscallError("epoll_wait", err)
				return true
			}
			for _, ev := range events[:n] {
				ready = append(ready, ev.Fd)
			}
			return n > 0
		}
	}
	for {
		ready = ready[:0]
		err := x.rc.Read(collect)
		for _, fd := range ready {
			x.fire(fd)
		}
		if err == nil {
			err = waitErr
		}
		if err != nil {
			x.mu.Lock()
			if !x.closed {
				x.log.Warn("exit watcher stopped; each worker's wait holds a thread", "err", err)
			}
			x.closed = true
			left := x.pending
			x.pending = nil
			x.mu.Unlock()
			for fd, onExit := range left {
				_ = unix.Close(int(fd))
				onExit()
			}
			return
		}
	}
}

// fire takes the pidfd out of the set, closes it and runs its onExit.
// Only fire and loop's end close pidfds, both on loop's goroutine, so fd
// is not another one yet.
//
// The explicit EPOLL_CTL_DEL matters: epoll forgets a descriptor only
// when its open file is released, and a child forked elsewhere in the
// process holds a copy of every descriptor until it execs. Closing alone
// left the exited process's entry in the set, still ready, under a
// number that the next watch could reuse for a live worker, which was
// then reported as exited (TestExitWatcher failed about one run in four
// beside the package's other tests).
func (x *exitWatcher) fire(fd int32) {
	x.mu.Lock()
	onExit, ok := x.pending[fd]
	if ok {
		delete(x.pending, fd)
		if !x.closed { // else the set is closed, or about to be, with all it holds
			_ = unix.EpollCtl(x.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
		}
		_ = unix.Close(int(fd))
	}
	x.mu.Unlock()
	if ok {
		onExit()
	}
}

// close stops the watcher; the workers it still watches (alive past
// Close's deadline) wait for their exits as before, blocked.
func (x *exitWatcher) close() {
	if x == nil {
		return
	}
	x.mu.Lock()
	x.closed = true
	x.mu.Unlock()
	_ = x.ep.Close()
	<-x.done
}
