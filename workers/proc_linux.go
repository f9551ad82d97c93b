//go:build linux

package workers

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/workerscope/workerscope/internal/procfs"
)

const (
	sigTerm = syscall.SIGTERM
	sigKill = syscall.SIGKILL
)

// platform holds the Linux process hygiene: a spawner thread for the
// parent-death signal, the subreaper, tree signalling and orphan reaping.
type platform struct {
	log           *slog.Logger
	orphansReaped *atomic.Uint64 // the Manager's count

	// spawn requests run on one locked OS thread: PR_SET_PDEATHSIG fires
	// when the thread that forked the child exits, and Go may retire
	// threads, so the spawner's thread lives until Close.
	spawnReq  chan spawnRequest
	spawnDone chan struct{}

	mu        sync.Mutex // guards scanner and pids
	scanner   *procfs.Scanner
	pids      map[int]bool // worker pids between Start and Wait
	ownPGRP   int
	self      int
	subreaper bool
	kids      []int

	lim limitsPlatform

	exits *exitWatcher // nil: each worker's wait blocks in waitid (exits_linux.go)

	trees sync.Pool // *treeReader for readTree (command cost)
}

type spawnRequest struct {
	cmd *exec.Cmd
	err chan error
}

func newPlatform(log *slog.Logger, orphansReaped *atomic.Uint64, subreaper bool) (*platform, error) {
	p := &platform{
		log:           log,
		orphansReaped: orphansReaped,
		spawnReq:      make(chan spawnRequest),
		spawnDone:     make(chan struct{}),
		scanner:       procfs.NewScanner("", MarkerEnv),
		pids:          make(map[int]bool),
		ownPGRP:       syscall.Getpgrp(),
		self:          os.Getpid(),
	}
	if subreaper {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			log.Warn("cannot become child subreaper; orphaned descendants go to init", "err", err)
		} else {
			p.subreaper = true
		}
	}
	p.exits = newExitWatcher(log)
	go p.spawner()
	return p, nil
}

func (p *platform) spawner() {
	runtime.LockOSThread()
	defer close(p.spawnDone)
	for req := range p.spawnReq {
		p.mu.Lock()
		err := req.cmd.Start()
		if err == nil {
			p.pids[req.cmd.Process.Pid] = true
		}
		p.mu.Unlock()
		req.err <- err
	}
	// Every worker is gone: hand the thread back instead of killing it.
	runtime.UnlockOSThread()
}

// start starts cmd in its own process group with SIGKILL as its
// parent-death signal, born into cg's v2 group when it has one
// (clone3 CLONE_INTO_CGROUP: it never runs outside it).
func (p *platform) start(cmd *exec.Cmd, cg *workerCgroup) error {
	var cred *syscall.Credential // tier 2 (setCredential)
	if cmd.SysProcAttr != nil {
		cred = cmd.SysProcAttr.Credential
	}
	// The kernel clears the parent-death signal when credentials change;
	// Go's child sets it after switching uid, so it holds.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	if cg != nil && cg.V2 != "" {
		dir, err := cg.OpenV2()
		if err != nil {
			return err
		}
		defer dir.Close()
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = int(dir.Fd())
	}
	req := spawnRequest{cmd: cmd, err: make(chan error, 1)}
	p.spawnReq <- req
	return <-req.err
}

func (p *platform) forget(pid int) {
	p.mu.Lock()
	delete(p.pids, pid)
	p.mu.Unlock()
}

func (p *platform) startTicks(pid int) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, err := p.scanner.Reader().ReadStat(pid)
	if err != nil {
		return 0
	}
	return st.StartTime
}

// signalTree sends sig to w's process group and to every process of its
// tree (by ancestry from the worker, and by the inherited marker for
// re-parented descendants). It returns how many live (non-zombie)
// processes it signalled besides the group.
func (p *platform) signalTree(w *worker, sig syscall.Signal) int {
	root := procfs.Root{Marker: w.id}
	select {
	case <-w.procExited:
		// Reaped: its PID (and so its group ID) may be reused, so no group
		// kill; what is left of the group is reached member by member.
	default:
		root.PID, root.StartTime = w.pid, w.startTicks
		_ = syscall.Kill(-w.pid, sig) // the worker's own group (pgid = its pid)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.scanner.Scan(); err != nil {
		p.log.Error("cannot scan /proc to stop a worker's tree", "worker", w.id, "err", err)
		return 0
	}
	trees := p.scanner.Attribute([]procfs.Root{root}, w.startTicks, nil)
	procs := p.scanner.Procs()
	if w.members == nil {
		w.members = make(map[[2]uint64]struct{})
	}
	for _, i := range trees[0] {
		w.members[[2]uint64{uint64(procs[i].PID), procs[i].StartTime}] = struct{}{}
	}
	if w.cg != nil {
		// Exact membership: whatever ancestry and markers missed.
		if sig == sigKill {
			w.cg.Kill()
		}
		pids, _ := w.cg.PIDs()
		for _, pid := range pids {
			if i := p.scanner.Lookup(pid); i >= 0 {
				w.members[[2]uint64{uint64(pid), procs[i].StartTime}] = struct{}{}
			}
		}
	}
	n := 0
	for id := range w.members {
		i := p.scanner.Lookup(int(id[0]))
		if i < 0 || procs[i].StartTime != id[1] {
			delete(w.members, id) // gone (reaped)
			continue
		}
		if procs[i].State == 'Z' {
			continue
		}
		if err := syscall.Kill(procs[i].PID, sig); err == nil {
			n++
		}
	}
	return n
}

// reapOrphans waits for zombie children that are not workers: descendants
// re-parented to this subreaper. Children in the supervisor's own process
// group are left alone (they belong to whoever embeds the Manager).
func (p *platform) reapOrphans() {
	if !p.subreaper {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.scanner.Reader()
	var err error
	p.kids, err = r.Children(p.self, p.kids[:0])
	if err != nil {
		return
	}
	for _, pid := range p.kids {
		if p.pids[pid] {
			continue
		}
		st, err := r.ReadStat(pid)
		if err != nil || st.State != 'Z' || st.PGRP == p.ownPGRP {
			continue
		}
		var ws unix.WaitStatus
		if got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); err == nil && got == pid {
			p.orphansReaped.Add(1)
		}
	}
}

func (p *platform) close() {
	close(p.spawnReq)
	<-p.spawnDone
	p.exits.close()
	p.reapOrphans()
}

// watchExit runs onExit once the child pid, not yet waited for, has
// exited, and reports whether it will: false when exits cannot be watched
// (then the caller waits, blocked).
func (p *platform) watchExit(pid int, onExit func()) bool {
	return p.exits.watch(pid, onExit)
}

// setCredential makes cmd run as uid, with gid = uid and no supplementary
// groups.
func (p *platform) setCredential(cmd *exec.Cmd, uid int) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), Groups: []uint32{}}
}

// chownCgroup lets uid move itself into cg's v1 groups: the placement
// shim runs as the worker's uid (writing one's own PID to cgroup.procs
// needs write access to the file and the same uid).
func (p *platform) chownCgroup(cg *workerCgroup, uid int) error {
	if cg == nil {
		return nil
	}
	for _, f := range cg.V1Procs() {
		if err := os.Chown(f, uid, uid); err != nil {
			return fmt.Errorf("hand the cgroup to the worker uid: %w", err)
		}
	}
	return nil
}

// killUIDs SIGKILLs every live process any of whose user IDs (real,
// effective, saved, file system) match, again and again until none is
// left or two seconds have passed. It returns how many it signalled and
// how many were left.
func (p *platform) killUIDs(match func(uint32) bool) (killed, left int) {
	r := procfs.NewReader("")
	deadline := time.Now().Add(2 * time.Second)
	var pids []int
	for {
		var err error
		pids, err = r.PIDs(pids[:0])
		if err != nil {
			return killed, 0
		}
		n := 0
		for _, pid := range pids {
			if pid == p.self {
				continue
			}
			ids, err := r.UIDs(pid)
			if err != nil || !slices.ContainsFunc(ids[:], match) {
				continue
			}
			if st, err := r.ReadStat(pid); err != nil || st.State == 'Z' {
				continue
			}
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				n++
			}
		}
		if n == 0 {
			return killed, 0
		}
		killed += n
		if time.Now().After(deadline) {
			return killed, n
		}
		time.Sleep(20 * time.Millisecond)
		p.reapOrphans()
	}
}
