//go:build linux

package workers

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/workerscope/workerscope/internal/cgroup"
	"github.com/workerscope/workerscope/internal/procfs"
)

// workerCgroup is a worker's cgroup set and the meter that reads its
// usage files through descriptors kept open for the worker's life.
type workerCgroup struct {
	*cgroup.Group
	meter *cgroup.Meter // nil when none of its usage files could be opened
}

// shimShell runs the v1 placement shim (cgroup.ShimScript).
const shimShell = "/bin/sh"

// limitsPlatform is the Linux side of worker limits.
type limitsPlatform struct {
	layout cgroup.Layout
	plan   *cgroup.Plan  // nil: workers get no cgroups
	limits cgroup.Limits // each worker cgroup's
	// optional: the groups are for membership alone (auto, no limit set),
	// so a worker whose group cannot be made runs without one.
	optional bool
	// watch is the watchdog's scanner, used by the limit loop only.
	watch *procfs.Scanner
	roots []procfs.Root
	trees [][]int
}

// setupLimits detects cgroups and chooses the tier.
func (p *platform) setupLimits(cfg *Config) (LimitsInfo, error) {
	if cfg.Cgroups != CgroupsOff {
		self, err := os.ReadFile("/proc/self/cgroup")
		if err == nil {
			p.lim.layout = cgroup.Detect(cfg.CgroupRoot, self)
		}
	}
	li, plan, err := selectTier(cfg, p.lim.layout, shimShell)
	if err != nil {
		return li, err
	}
	p.lim.plan = plan
	p.lim.optional = cfg.Cgroups == CgroupsAuto && !cfg.hasLimits()
	p.lim.limits = cgroup.Limits{MemoryBytes: cfg.MemoryMax, Pids: cfg.PidsMax, CPUCores: cfg.CPUMax}
	if li.Enforcement[LimitMemory] == string(TierWatchdog) || li.Enforcement[LimitPids] == string(TierWatchdog) {
		p.lim.watch = procfs.NewScanner("", MarkerEnv)
		p.lim.watch.SkipForeign = true
		p.lim.watch.RecheckEvery = 30
	}
	return li, nil
}

// selectTier chooses how to enforce cfg's limits on layout (what Detect
// found; zero when cgroups are off or unreadable). It is a function of its
// inputs and of probing the cgroup directories, so it is tested on fake
// trees.
func selectTier(cfg *Config, l cgroup.Layout, sh string) (LimitsInfo, *cgroup.Plan, error) {
	li := LimitsInfo{MemoryMax: cfg.MemoryMax, PidsMax: cfg.PidsMax, CPUMax: cfg.CPUMax, Enforcement: map[string]string{}}
	var need []cgroup.Controller
	var names []string
	for _, x := range []struct {
		set  bool
		name string
		c    cgroup.Controller
	}{{cfg.MemoryMax > 0, LimitMemory, cgroup.Memory}, {cfg.PidsMax > 0, LimitPids, cgroup.Pids}, {cfg.CPUMax > 0, LimitCPU, cgroup.CPU}} {
		if x.set {
			need = append(need, x.c)
			names = append(names, x.name)
		}
	}
	fallback := func(why string) (LimitsInfo, *cgroup.Plan, error) {
		if len(need) == 0 {
			li.Tier, li.Reason = TierOff, "no limits set"
			if why != "" {
				li.Reason += "; no cgroups for exact membership and kill-all: " + why
			}
			return li, nil, nil
		}
		li.Tier, li.Reason = TierWatchdog, why
		for _, n := range names {
			li.Enforcement[n] = string(TierWatchdog)
		}
		if cfg.CPUMax > 0 {
			li.Enforcement[LimitCPU] = "none"
		}
		return li, nil, nil
	}
	if cfg.Cgroups == CgroupsOff {
		return fallback("cgroups off by configuration")
	}
	// With no limit set, auto still gives every worker a controller-less
	// v2 group where one can be made: exact membership (descendants that
	// escaped the ancestry walk are measured and die with the worker), the
	// CPU of the whole tree from its cpu.stat, cgroup.kill. Where none can
	// be made that is no failure: the tier is off, with the reason.
	var reasons []string
	if l.PureV2 {
		plan, err := cgroup.PlanV2(l, need)
		if err == nil {
			li.Tier, li.Cgroups = TierCgroup2, true
			li.Reason = "cgroup v2 controllers delegated; worker groups in " + plan.V2Base
			if len(need) == 0 {
				li.Reason = "no limits set; membership and kill-all in cgroup v2 groups in " + plan.V2Base
			}
			for _, n := range names {
				li.Enforcement[n] = string(TierCgroup2)
			}
			return li, &plan, nil
		}
		reasons = append(reasons, err.Error())
	} else if l.Root != "" {
		plan, err := planV1(l, need, sh)
		if len(plan.Enforced) > 0 || (len(need) == 0 && plan.V2Base != "") {
			li.Tier, li.Cgroups = TierCgroup1, true
			li.Reason = "cgroup v1 controllers writable (hybrid layout)"
			if len(need) == 0 {
				li.Reason = "no limits set (hybrid layout)"
			}
			if plan.V2Base != "" {
				li.Reason += "; membership and kill-all on the v2 hierarchy at " + plan.V2Base
			}
			for i, n := range names {
				switch {
				case plan.Enforces(need[i]):
					li.Enforcement[n] = string(TierCgroup1)
				case n == LimitCPU:
					li.Enforcement[n] = "none"
				default:
					li.Enforcement[n] = string(TierWatchdog)
				}
			}
			if err != nil {
				li.Reason += "; partly: " + err.Error()
				if cfg.Cgroups == CgroupsRequired {
					return li, nil, fmt.Errorf("workers: Cgroups=required but cgroups cannot enforce every limit: %w", err)
				}
			}
			return li, &plan, nil
		}
		if err != nil {
			reasons = append(reasons, err.Error())
		}
	} else {
		reasons = append(reasons, "cannot read /proc/self/cgroup")
	}
	why := "no usable cgroups: " + strings.Join(reasons, "; ")
	if cfg.Cgroups == CgroupsRequired {
		return li, nil, errors.New("workers: Cgroups=required but " + why)
	}
	return fallback(why)
}

// planV1 plans v1 groups; without the shim shell nothing can be placed
// in v1 groups before it runs, so only the v2 membership group is kept.
func planV1(l cgroup.Layout, need []cgroup.Controller, sh string) (cgroup.Plan, error) {
	if len(need) == 0 {
		return cgroup.PlanMembership(l)
	}
	plan, err := cgroup.PlanV1(l, need)
	if len(plan.Enforced) > 0 {
		if _, serr := os.Stat(sh); serr != nil {
			return cgroup.Plan{}, fmt.Errorf("cgroup v1 groups need %s to place workers before they run: %w", sh, serr)
		}
	}
	return plan, err
}

// prepare creates the worker's cgroups and, for v1 groups, wraps cmd in
// the placement shim. It returns nil when workers get no cgroups.
func (p *platform) prepare(id string, cmd *exec.Cmd) (*workerCgroup, error) {
	plan := p.lim.plan
	if plan == nil {
		return nil, nil
	}
	if cmd.Err != nil {
		return nil, cmd.Err
	}
	g, err := plan.Create("workerscope-"+id, p.lim.limits)
	if err != nil {
		if p.lim.optional {
			// No limit depends on it: the worker runs, measured and
			// stopped by ancestry and marker as in tier off.
			p.log.Warn("cannot create the worker's cgroup; it runs without one (membership by ancestry and marker)", "worker", id, "err", err)
			return nil, nil
		}
		return nil, err
	}
	cg := &workerCgroup{Group: g}
	if cg.meter, err = g.OpenMeter(); err != nil {
		// The tree is still measured, by walking /proc.
		p.log.Warn("cannot open the worker cgroup's usage files", "cgroup", g.Name, "err", err)
	}
	if len(cg.V1) > 0 {
		argv := append([]string{cmd.Path}, cmd.Args[1:]...)
		cmd.Args = cg.ShimArgs(shimShell, argv)
		cmd.Path = shimShell
	}
	return cg, nil
}

// release kills what is left in the worker's cgroups and removes them.
func (p *platform) release(cg *workerCgroup) {
	if cg == nil {
		return
	}
	if cg.meter != nil {
		_ = cg.meter.Close()
	}
	if err := cg.Remove(); err != nil {
		p.log.Error("cannot remove worker cgroup", "cgroup", cg.Name, "err", err)
	}
}

func (p *platform) cgroupPath(cg *workerCgroup) string {
	if cg == nil {
		return ""
	}
	if cg.V2 != "" {
		return cg.V2
	}
	for _, c := range []cgroup.Controller{cgroup.Memory, cgroup.Pids, cgroup.CPU} {
		if d, ok := cg.V1[c]; ok {
			return d
		}
	}
	return ""
}

func (p *platform) cgroupPIDs(cg *workerCgroup) ([]int, error) {
	if cg.meter != nil {
		if pids, err := cg.meter.PIDs(nil); err == nil {
			return pids, nil
		}
	}
	return cg.PIDs()
}

// cgroupUsage reads what the worker's cgroup files say of its tree (what:
// cgroup.ReadCPU, ReadMemory, ReadTasks); false without a meter or when
// nothing could be read.
func (p *platform) cgroupUsage(cg *workerCgroup, what int, u *CgroupUsage) bool {
	if cg == nil || cg.meter == nil {
		return false
	}
	var mask int
	for _, x := range [...][2]int{{cgroupReadCPU, cgroup.ReadCPU}, {cgroupReadMemory, cgroup.ReadMemory}, {cgroupReadTasks, cgroup.ReadTasks}} {
		if what&x[0] != 0 {
			mask |= x[1]
		}
	}
	var cu cgroup.Usage
	_ = cg.meter.Read(mask, &cu) // a figure that cannot be read is unset
	*u = CgroupUsage(cu)
	return u.HasCPU || u.HasMemory || u.HasTasks
}

func (p *platform) counters(cg *workerCgroup) limitCounters {
	c := cg.Counters()
	return limitCounters{oomKills: c.OOMKills, pidsMax: c.PidsMax, cpuThrottled: c.CPUThrottled}
}

// measure sizes every worker's tree (one /proc pass that skips processes
// known to be in no tree): resident memory and threads.
func (p *platform) measure(ws []*worker, out []treeUsage) []treeUsage {
	out = slices.Grow(out[:0], len(ws))[:len(ws)]
	clear(out)
	s := p.lim.watch
	if s == nil || s.Scan() != nil {
		return out
	}
	p.lim.roots = p.lim.roots[:0]
	minStart := uint64(0)
	for i, w := range ws {
		rt := procfs.Root{Marker: w.id}
		select {
		case <-w.procExited:
		default:
			rt.PID, rt.StartTime = w.pid, w.startTicks
		}
		if i == 0 || w.startTicks < minStart {
			minStart = w.startTicks
		}
		p.lim.roots = append(p.lim.roots, rt)
	}
	p.lim.trees = s.Attribute(p.lim.roots, minStart, p.lim.trees)
	procs := s.Procs()
	page := int64(os.Getpagesize())
	for k, tree := range p.lim.trees {
		u := treeUsage{ok: true}
		for _, i := range tree {
			if procs[i].State == 'Z' {
				continue
			}
			u.rssBytes += procs[i].RSS * page
			u.tasks += procs[i].NumThreads
		}
		out[k] = u
	}
	return out
}

// recoverInstance kills and removes what a dead instance left: its
// cgroups (named workerscope-<instance>-*) and processes carrying its
// marker, with their descendants. It returns the PIDs killed and how many
// cgroups were removed.
func (p *platform) recoverInstance(inst string) (killed []int, groups int) {
	for _, lo := range cgroup.FindLeftovers(p.lim.layout.Bases(), "workerscope-"+inst+"-") {
		killed = append(killed, lo.PIDs()...)
		if err := lo.Remove(); err != nil {
			p.log.Warn("cannot remove leftover cgroup", "cgroup", lo.Name, "err", err)
		} else {
			groups++
		}
	}
	s := procfs.NewScanner("", MarkerEnv)
	r := s.Reader()
	for round := 0; round < 50; round++ {
		if s.Scan() != nil {
			break
		}
		var roots []procfs.Root
		for _, pr := range s.Procs() {
			if pr.PID == p.self || pr.State == 'Z' {
				continue
			}
			v, ok, _ := r.EnvValue(pr.PID, MarkerEnv)
			if ok && strings.HasPrefix(v, inst+"-") && !slices.ContainsFunc(roots, func(rt procfs.Root) bool { return rt.Marker == v }) {
				roots = append(roots, procfs.Root{Marker: v})
			}
		}
		if len(roots) == 0 {
			break
		}
		procs := s.Procs()
		n := 0
		for _, tree := range s.Attribute(roots, 0, nil) {
			for _, i := range tree {
				if procs[i].State == 'Z' || procs[i].PID == p.self {
					continue
				}
				if syscall.Kill(procs[i].PID, syscall.SIGKILL) == nil {
					n++
					if !slices.Contains(killed, procs[i].PID) {
						killed = append(killed, procs[i].PID)
					}
				}
			}
		}
		if n == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
		p.reapOrphans()
	}
	slices.Sort(killed)
	return killed, groups
}
