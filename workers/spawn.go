package workers

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"

	"github.com/workerscope/workerscope/workers/internal/wire"
)

// spawn starts a worker process for s.
func (m *Manager) spawn(s *session) (*worker, error) {
	id := fmt.Sprintf("%s-%d", m.id, m.pool.workerSeq.Add(1))
	cmd := exec.Command(m.cfg.Command[0], m.cfg.Command[1:]...)
	cmd.Dir = m.cfg.Dir
	cmd.Env = append(append(m.baseEnv(), m.cfg.Env...), MarkerEnv+"="+id, KeyEnv+"="+s.key)

	var files []*os.File
	closeAll := func() {
		for _, f := range files {
			_ = f.Close()
		}
	}
	pipe := func() (r, w *os.File, err error) {
		r, w, err = os.Pipe()
		if err == nil {
			files = append(files, r, w)
		}
		return
	}
	inR, inW, err1 := pipe()
	outR, outW, err2 := pipe()
	errR, errW, err3 := pipe()
	if err := errors.Join(err1, err2, err3); err != nil {
		closeAll()
		return nil, fmt.Errorf("%w: pipes: %w", ErrSpawn, err)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	// Identity, directory and sandbox first: the cgroup shim (v1) then
	// runs as the worker's uid and execs the sandbox helper.
	iso, err := m.isolate(id, cmd)
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("%w: %s: %w", ErrSpawn, m.cfg.Command[0], err)
	}
	cg, err := m.plat.prepare(id, cmd)
	if err == nil && iso.uid >= 0 {
		err = m.plat.chownCgroup(cg, iso.uid)
	}
	if err != nil {
		closeAll()
		m.plat.release(cg)
		m.releaseIsolation(iso)
		return nil, fmt.Errorf("%w: %s: %w", ErrSpawn, m.cfg.Command[0], err)
	}
	if err := m.plat.start(cmd, cg); err != nil {
		closeAll()
		m.plat.release(cg)
		m.releaseIsolation(iso)
		return nil, fmt.Errorf("%w: %s: %w", ErrSpawn, m.cfg.Command[0], err)
	}
	_ = inR.Close()
	_ = outW.Close()
	_ = errW.Close()
	// The child has its environment: the Manager need not keep a copy for
	// the worker's life (about 1 KiB per worker, more under a large one).
	cmd.Env = nil

	m.mu.Lock()
	restarts := s.restarts
	if s.crashed {
		s.restarts++
		restarts = s.restarts
		s.crashed = false
	}
	m.mu.Unlock()
	now := m.now()
	w := &worker{
		m: m, s: s, id: id, key: s.key, cmd: cmd, pid: cmd.Process.Pid,
		startedAt: now, restarts: restarts, lastActive: now,
		stdin: inW, stdout: outR, stderrR: errR,
		wsem:       make(chan struct{}, 1),
		procExited: make(chan struct{}),
		readDone:   make(chan struct{}),
		errDone:    make(chan struct{}),
		done:       make(chan struct{}),
		pending:    make(map[string]chan reply),
		stderr:     wire.NewTailBuffer(m.cfg.StderrTailBytes),
		cg:         cg,
		iso:        iso,
	}
	w.startTicks = m.plat.startTicks(w.pid)
	m.log.Debug("worker spawned", "worker", id, "key", s.key, "pid", w.pid)
	return w, nil
}

// baseEnv is the supervisor's environment less Config.EnvDrop and any
// inherited marker (a supervisor running inside another's worker must not
// hand its own marker down).
func (m *Manager) baseEnv() []string {
	env := os.Environ()
	out := env[:0:0]
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if name == MarkerEnv || name == KeyEnv || slices.ContainsFunc(m.cfg.EnvDrop, func(p string) bool { return strings.HasPrefix(name, p) }) {
			continue
		}
		out = append(out, kv)
	}
	return out
}
