//go:build !linux

package workers

import (
	"os/exec"
	"syscall"
)

const (
	sigTerm = syscall.SIGTERM
	sigKill = syscall.SIGKILL
)

// platform on non-Linux Unix systems: process groups only. There is no
// parent-death signal, no subreaper and no /proc tree walk, so descendants
// that leave the worker's process group are not found.
type platform struct{ m *Manager }

func newPlatform(m *Manager, _ bool) (*platform, error) {
	m.log.Warn("process-tree tracking is Linux-only here; stopping signals process groups only")
	return &platform{m: m}, nil
}

func (p *platform) start(cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd.Start()
}

func (p *platform) forget(int)            {}
func (p *platform) startTicks(int) uint64 { return 0 }
func (p *platform) reapOrphans()          {}
func (p *platform) close()                {}

func (p *platform) signalTree(w *worker, sig syscall.Signal) int {
	if syscall.Kill(-w.pid, sig) == nil {
		select {
		case <-w.procExited:
			return 0
		default:
			return 1
		}
	}
	return 0
}
