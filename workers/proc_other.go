//go:build !linux

package workers

import (
	"errors"
	"log/slog"
	"os/exec"
	"sync/atomic"
	"syscall"
)

const (
	sigTerm = syscall.SIGTERM
	sigKill = syscall.SIGKILL
)

// platform on non-Linux Unix systems: process groups only. There is no
// parent-death signal, no subreaper and no /proc tree walk, so descendants
// that leave the worker's process group are not found.
type platform struct{}

func newPlatform(log *slog.Logger, _ *atomic.Uint64, _ bool) (*platform, error) {
	if err := platformSupported(); err != nil {
		return nil, err
	}
	log.Warn("process-tree tracking is Linux-only here; stopping signals process groups only")
	return &platform{}, nil
}

func (p *platform) start(cmd *exec.Cmd, _ *workerCgroup) error {
	startInGroup(cmd)
	return cmd.Start()
}

func (p *platform) forget(int)            {}
func (p *platform) startTicks(int) uint64 { return 0 }
func (p *platform) reapOrphans()          {}
func (p *platform) close()                {}

// watchExit: no exit watcher here; the caller's wait blocks.
func (p *platform) watchExit(int, func()) bool { return false }

func (p *platform) signalTree(w *worker, sig syscall.Signal) int {
	if signalGroup(w.pid, sig) == nil {
		select {
		case <-w.procExited:
			return 0
		default:
			return 1
		}
	}
	return 0
}

// workerCgroup: no cgroups outside Linux.
type workerCgroup struct{}

// setupLimits: there is no cgroup and no process-tree measurement here,
// so limits cannot be enforced; Cgroups=required fails.
func (p *platform) setupLimits(cfg *Config) (LimitsInfo, error) {
	li := LimitsInfo{Tier: TierOff, MemoryMax: cfg.MemoryMax, PidsMax: cfg.PidsMax, CPUMax: cfg.CPUMax, Enforcement: map[string]string{}}
	if cfg.Cgroups == CgroupsRequired {
		return li, errors.New("workers: Cgroups=required but cgroups exist on Linux only")
	}
	li.Reason = "no limits set"
	if cfg.hasLimits() {
		li.Reason = "worker limits are enforced on Linux only"
		for _, x := range []struct {
			set  bool
			name string
		}{{cfg.MemoryMax > 0, LimitMemory}, {cfg.PidsMax > 0, LimitPids}, {cfg.CPUMax > 0, LimitCPU}} {
			if x.set {
				li.Enforcement[x.name] = "none"
			}
		}
	}
	return li, nil
}

func (p *platform) prepare(string, *exec.Cmd) (*workerCgroup, error)  { return nil, nil }
func (p *platform) release(*workerCgroup)                             {}
func (p *platform) cgroupPath(*workerCgroup) string                   { return "" }
func (p *platform) cgroupPIDs(*workerCgroup) ([]int, error)           { return nil, errors.New("no cgroups") }
func (p *platform) cgroupUsage(*workerCgroup, int, *CgroupUsage) bool { return false }
func (p *platform) counters(*workerCgroup) limitCounters              { return limitCounters{} }
func (p *platform) recoverInstance(string) ([]int, int)               { return nil, 0 }
func (p *platform) measure(ws []*worker, out []treeUsage) []treeUsage {
	return make([]treeUsage, len(ws))
}

// Per-worker uids are refused at New outside Linux (sandbox.CheckIdentityCaps).
func (p *platform) setCredential(*exec.Cmd, int)          {}
func (p *platform) chownCgroup(*workerCgroup, int) error  { return nil }
func (p *platform) killUIDs(func(uint32) bool) (int, int) { return 0, 0 }
