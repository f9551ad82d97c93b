package workers

import (
	"syscall"
)

const numLimits = 3 // LimitNames: memory, pids, cpu

// limitCounters are a worker cgroup's cumulative limit events.
type limitCounters struct {
	oomKills, pidsMax, cpuThrottled uint64
}

// treeUsage is one worker tree's measured size, for the watchdog.
type treeUsage struct {
	ok       bool
	rssBytes int64
	tasks    int64 // threads, as the kernel counts for pids.max
}

// Limits reports the per-worker limits, the enforcement tier chosen at
// start-up and why.
func (m *Manager) Limits() LimitsInfo {
	li := m.limits.info
	li.Enforcement = make(map[string]string, len(m.limits.info.Enforcement))
	for k, v := range m.limits.info.Enforcement {
		li.Enforcement[k] = v
	}
	return li
}

// WorkerPIDs lists the processes in the cgroup of the worker with the
// given ID: exact membership, including descendants that scrubbed their
// environment and were re-parented. ok is false when the worker is unknown
// or has no cgroup (tiers watchdog and off); then use tree attribution by
// ancestry and the MarkerEnv marker instead.
func (m *Manager) WorkerPIDs(workerID string) (pids []int, ok bool) {
	m.mu.Lock()
	w := m.pool.byID[workerID] // a lookup, not a scan: the sampler asks for every worker with a cgroup, every pass
	m.mu.Unlock()
	if w == nil || w.cg == nil {
		return nil, false
	}
	pids, err := m.plat.cgroupPIDs(w.cg)
	return pids, err == nil
}

// setupLimits chooses the enforcement tier once and logs it.
func (m *Manager) setupLimits() error {
	li, err := m.plat.setupLimits(&m.cfg)
	if err != nil {
		return err
	}
	m.limits.info = li
	args := []any{"tier", li.Tier, "reason", li.Reason}
	if li.MemoryMax > 0 {
		args = append(args, "memory_max", FormatByteSize(li.MemoryMax))
	}
	if li.PidsMax > 0 {
		args = append(args, "pids_max", li.PidsMax)
	}
	if li.CPUMax > 0 {
		args = append(args, "cpu_max", li.CPUMax)
	}
	for _, name := range LimitNames {
		if e, ok := li.Enforcement[name]; ok {
			args = append(args, name, e)
		}
	}
	switch {
	case li.Enforcement[LimitCPU] == "none":
		m.log.Warn("worker limits: CPU limit not enforced without cgroups", args...)
	case li.Tier == TierOff && m.cfg.hasLimits():
		m.log.Warn("worker limits: not enforced", args...)
	default: // the tier is logged once at start, limits set or not
		m.log.Info("worker limits", args...)
	}
	return nil
}

// watched reports whether the watchdog enforces the named limit.
func (m *Manager) watched(limit string) bool {
	return m.limits.info.Enforcement[limit] == string(TierWatchdog)
}

// limiter is the enforcement tier chosen at start-up and its watchdog.
type limiter struct {
	info LimitsInfo
	// watchdog measures trees for the limits that cgroups do not enforce
	// and reads cgroup limit events (not started when there is neither).
	watchdog loop
	// ws and usage are limitPass's scratch (the watchdog's goroutine only).
	ws    []*worker
	usage []treeUsage
}

// startWatchdog starts the limit loop when there is something to watch.
func (m *Manager) startWatchdog() {
	// Nothing to watch without a limit, even when workers have cgroups
	// (controller-less groups, for membership alone, count no events).
	if !m.cfg.hasLimits() || !m.limits.info.Cgroups && !m.watched(LimitMemory) && !m.watched(LimitPids) {
		return
	}
	m.limits.watchdog.start(m.cfg.WatchdogInterval, func() {
		m.limits.ws, m.limits.usage = m.limitPass(m.limits.ws[:0], m.limits.usage[:0])
	})
}

// limitPass is one watchdog pass over the live workers.
func (m *Manager) limitPass(ws []*worker, usage []treeUsage) ([]*worker, []treeUsage) {
	m.mu.Lock()
	for w := range m.pool.live {
		ws = append(ws, w)
	}
	m.mu.Unlock()
	if len(ws) == 0 {
		return ws, usage
	}
	for _, w := range ws {
		m.syncCounters(w)
	}
	watchMem, watchPids := m.watched(LimitMemory), m.watched(LimitPids)
	if !watchMem && !watchPids {
		return ws, usage
	}
	usage = m.plat.measure(ws, usage)
	for i, w := range ws {
		u := usage[i]
		w.mu.Lock()
		gone := w.stopping || w.exited || w.dead
		w.mu.Unlock()
		if gone || !u.ok {
			continue
		}
		// w.over is touched by this goroutine only.
		var hit *LimitError
		if watchMem && u.rssBytes > m.cfg.MemoryMax {
			w.over[0]++
			if w.over[0] >= 2 {
				hit = &LimitError{Limit: LimitMemory, Max: m.cfg.MemoryMax, Used: u.rssBytes, By: "watchdog"}
			}
		} else {
			w.over[0] = 0
		}
		if watchPids && u.tasks > m.cfg.PidsMax {
			w.over[1]++
			if w.over[1] >= 2 && hit == nil {
				hit = &LimitError{Limit: LimitPids, Max: m.cfg.PidsMax, Used: u.tasks, By: "watchdog"}
			}
		} else {
			w.over[1] = 0
		}
		if hit != nil {
			m.stopForLimit(w, hit)
		}
	}
	return ws, usage
}

// stopForLimit stops w (TERM, grace, KILL) because its tree is over a limit.
func (m *Manager) stopForLimit(w *worker, le *LimitError) {
	reason := ExitMemoryLimit
	idx := 0
	if le.Limit == LimitPids {
		reason, idx = ExitPidsLimit, 1
	}
	w.mu.Lock()
	if w.stopping || w.exited || w.dead {
		w.mu.Unlock()
		return
	}
	w.limitErr = le
	w.hits[idx]++
	w.mu.Unlock()
	m.counts.limitHits[idx].Add(1)
	m.log.Warn("worker over its limit on two watchdog passes; stopping it", "worker", w.id, "key", w.key, "pid", w.pid, "limit", le.Error())
	m.terminate(w, reason)
}

// syncCounters reads w's cgroup event counters, counts what is new and
// publishes worker_limit events for refused forks and OOM kills.
func (m *Manager) syncCounters(w *worker) {
	if w.cg == nil {
		return
	}
	c := m.plat.counters(w.cg)
	w.mu.Lock()
	last := w.counters
	dOOM, dPids, dCPU := sub(c.oomKills, last.oomKills), sub(c.pidsMax, last.pidsMax), sub(c.cpuThrottled, last.cpuThrottled)
	w.counters = limitCounters{max(c.oomKills, last.oomKills), max(c.pidsMax, last.pidsMax), max(c.cpuThrottled, last.cpuThrottled)}
	w.hits[0] += dOOM
	w.hits[1] += dPids
	w.hits[2] += dCPU
	w.mu.Unlock()
	m.counts.limitHits[0].Add(dOOM)
	m.counts.limitHits[1].Add(dPids)
	m.counts.limitHits[2].Add(dCPU)
	if dPids > 0 {
		l := w.lifecycle(LifecycleWorkerLimit)
		l.Limit, l.Max, l.Count, l.Action = LimitPids, m.cfg.PidsMax, dPids, "fork_refused"
		m.publishLifecycle(w.s, l)
	}
	if dOOM > 0 {
		l := w.lifecycle(LifecycleWorkerLimit)
		l.Limit, l.Max, l.Count, l.Action = LimitMemory, m.cfg.MemoryMax, dOOM, "oom_kill"
		m.publishLifecycle(w.s, l)
	}
}

func sub(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return 0
}

// oomKilled reports whether w's process, just waited for, was killed by
// the kernel OOM killer in its cgroup: SIGKILLed while its group counts an
// OOM kill.
func (m *Manager) oomKilled(w *worker) bool {
	if w.cg == nil || w.cmd.ProcessState == nil {
		return false
	}
	ws, ok := w.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		return false
	}
	m.syncCounters(w)
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.counters.oomKills > 0
}

func (w *worker) hitsLocked() map[string]uint64 {
	var out map[string]uint64
	for i, n := range w.hits {
		if n > 0 {
			if out == nil {
				out = make(map[string]uint64, numLimits)
			}
			out[LimitNames[i]] = n
		}
	}
	return out
}

// WorkerCgroupUsage reads what the worker's cgroup files say about its
// tree: CPU, memory and tasks, one kept-open file each. It returns false
// when the worker has no cgroup (tiers watchdog and off) or none of its
// usage files could be read.
func (m *Manager) WorkerCgroupUsage(workerID string, u *CgroupUsage) bool {
	m.mu.Lock()
	w := m.pool.byID[workerID]
	m.mu.Unlock()
	if w == nil || w.cg == nil {
		return false
	}
	return m.plat.cgroupUsage(w.cg, cgroupReadAll, u)
}
