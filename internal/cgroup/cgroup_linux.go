//go:build linux

package cgroup

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Controller names a resource controller.
type Controller string

// The controllers that worker limits use.
const (
	Memory Controller = "memory"
	Pids   Controller = "pids"
	CPU    Controller = "cpu"
)

// DefaultRoot is where cgroupfs is conventionally mounted.
const DefaultRoot = "/sys/fs/cgroup"

// Layout is what Detect found: the calling process's own cgroup on each
// hierarchy that is mounted at its conventional place under Root.
type Layout struct {
	Root string
	// PureV2 is true when Root itself is a cgroup v2 mount (no v1).
	PureV2 bool
	// Unified is the process's own cgroup directory on the v2 hierarchy
	// (Root itself, or Root/unified on hybrid systems); "" when none.
	Unified string
	// V1 maps each v1 controller mounted under Root to the process's own
	// cgroup directory in that controller's hierarchy.
	V1 map[Controller]string
}

// ParseSelf parses /proc/PID/cgroup: the v2 path (the "0::" line, "" when
// absent) and the path per v1 controller.
func ParseSelf(data []byte) (v2 string, v1 map[string]string) {
	v1 = make(map[string]string)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		id, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		ctrls, path, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		if id == "0" && ctrls == "" {
			v2 = path
			continue
		}
		for c := range strings.SplitSeq(ctrls, ",") {
			if c != "" {
				v1[c] = path
			}
		}
	}
	return v2, v1
}

// Detect finds the hierarchies mounted under root ("" = DefaultRoot) and
// the calling process's own cgroup in each; self is the content of
// /proc/self/cgroup.
func Detect(root string, self []byte) Layout {
	if root == "" {
		root = DefaultRoot
	}
	v2, v1 := ParseSelf(self)
	l := Layout{Root: root, V1: make(map[Controller]string)}
	if exists(filepath.Join(root, "cgroup.controllers")) {
		l.PureV2 = true
		l.Unified = filepath.Join(root, filepath.FromSlash(v2))
		return l
	}
	for _, c := range []Controller{Memory, Pids, CPU} {
		p, ok := v1[string(c)]
		if !ok {
			continue
		}
		dir := filepath.Join(root, string(c))
		if exists(filepath.Join(dir, "cgroup.procs")) {
			l.V1[c] = filepath.Join(dir, filepath.FromSlash(p))
		}
	}
	if uni := filepath.Join(root, "unified"); exists(filepath.Join(uni, "cgroup.procs")) {
		l.Unified = filepath.Join(uni, filepath.FromSlash(v2))
	}
	return l
}

// Plan says where per-worker groups go and what they enforce.
type Plan struct {
	// Version is 2 (limits on the unified hierarchy) or 1 (limits on v1
	// hierarchies, membership on the controller-less unified one if any).
	Version int
	// V2Base is the directory worker groups are created in on the v2
	// hierarchy ("" when there is no usable v2 hierarchy).
	V2Base string
	// V1Base maps each v1 controller used to the directory worker groups
	// are created in (Version 1 only).
	V1Base map[Controller]string
	// Enforced lists the controllers whose limits the kernel enforces.
	Enforced []Controller
	// Kill is true when groups have cgroup.kill (Linux ≥ 5.14 on v2).
	Kill bool
}

// Enforces reports whether the plan enforces c.
func (p *Plan) Enforces(c Controller) bool { return slices.Contains(p.Enforced, c) }

// LeafName is the name of the leaf cgroup a supervisor can be placed in so
// that its parent (delegated to it, holding no processes) can hold the
// worker groups on cgroup v2; see PlanV2.
const LeafName = "supervisor"

// PlanV2 plans worker groups on a pure v2 hierarchy. Worker groups need
// the controllers enabled in their parent's cgroup.subtree_control, and a
// v2 cgroup holding processes may not enable controllers for children (the
// "no internal processes" rule). So groups go under the process's own
// cgroup when its subtree_control has, or can be given, every needed
// controller; else, when the own cgroup is a leaf named LeafName (systemd
// DelegateSubgroup=supervisor, or a container entrypoint that moved
// itself), next to it in the parent. Nothing is ever moved.
func PlanV2(l Layout, need []Controller) (Plan, error) {
	if !l.PureV2 || l.Unified == "" {
		return Plan{}, errors.New("no cgroup v2 (unified) hierarchy at " + l.Root)
	}
	var errs []error
	bases := []string{l.Unified}
	if filepath.Base(l.Unified) == LeafName {
		bases = append(bases, filepath.Dir(l.Unified))
	}
	for _, base := range bases {
		if err := enableControllers(base, need); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := probe(base); err != nil {
			errs = append(errs, err)
			continue
		}
		return Plan{Version: 2, V2Base: base, Enforced: slices.Clone(need),
			Kill: exists(filepath.Join(base, "cgroup.kill"))}, nil
	}
	return Plan{}, errors.Join(errs...)
}

func enableControllers(base string, need []Controller) error {
	avail, err := os.ReadFile(filepath.Join(base, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("cgroup v2 %s: %w", base, err)
	}
	var missing []string
	for _, c := range need {
		if !slices.Contains(strings.Fields(string(avail)), string(c)) {
			missing = append(missing, string(c))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("cgroup v2 %s: controllers %s not delegated (cgroup.controllers: %q)", base, strings.Join(missing, ","), strings.TrimSpace(string(avail)))
	}
	sub, _ := os.ReadFile(filepath.Join(base, "cgroup.subtree_control")) // unreadable: the write below tells
	var add []string
	for _, c := range need {
		if !slices.Contains(strings.Fields(string(sub)), string(c)) {
			add = append(add, "+"+string(c))
		}
	}
	if len(add) == 0 {
		return nil
	}
	if err := writeFile(filepath.Join(base, "cgroup.subtree_control"), strings.Join(add, " ")); err != nil {
		return fmt.Errorf("cgroup v2 %s: cannot enable %s for child groups (a cgroup holding processes cannot; run the supervisor in a leaf named %q): %w",
			base, strings.Join(add, " "), LeafName, err)
	}
	return nil
}

// PlanV1 plans worker groups on v1 hierarchies: for each needed controller
// that is mounted and writable, groups go under the process's own cgroup
// there (never elsewhere: nothing is moved out of the cgroup it was put
// in). The controller-less unified hierarchy, when present and writable,
// adds exact membership and cgroup.kill. It fails when no needed
// controller is usable.
func PlanV1(l Layout, need []Controller) (Plan, error) {
	if l.PureV2 {
		return Plan{}, errors.New("no cgroup v1 hierarchies: " + l.Root + " is cgroup v2")
	}
	p := Plan{Version: 1, V1Base: make(map[Controller]string)}
	var errs []error
	for _, c := range need {
		dir, ok := l.V1[c]
		if !ok {
			errs = append(errs, fmt.Errorf("cgroup v1 %s controller not mounted at %s", c, filepath.Join(l.Root, string(c))))
			continue
		}
		if err := probe(dir); err != nil {
			errs = append(errs, err)
			continue
		}
		p.V1Base[c] = dir
		p.Enforced = append(p.Enforced, c)
	}
	if len(p.Enforced) == 0 {
		if len(errs) == 0 {
			errs = append(errs, errors.New("no limits need a controller"))
		}
		return Plan{}, errors.Join(errs...)
	}
	if l.Unified != "" && probe(l.Unified) == nil {
		p.V2Base = l.Unified
		p.Kill = exists(filepath.Join(l.Unified, "cgroup.kill"))
	}
	return p, errors.Join(errs...) // partial: the caller decides
}

// PlanMembership plans controller-less worker groups on the v2 hierarchy
// (hybrid or pure): exact membership and kill-all, no limits.
func PlanMembership(l Layout) (Plan, error) {
	if l.Unified == "" {
		return Plan{}, errors.New("no cgroup v2 hierarchy for membership groups under " + l.Root)
	}
	if err := probe(l.Unified); err != nil {
		return Plan{}, err
	}
	return Plan{Version: 1, V2Base: l.Unified, Kill: exists(filepath.Join(l.Unified, "cgroup.kill"))}, nil
}

// probe checks that child groups can be created in dir.
func probe(dir string) error {
	var b [4]byte
	_, _ = rand.Read(b[:])
	p := filepath.Join(dir, "workerscope-probe-"+hex.EncodeToString(b[:]))
	if err := os.Mkdir(p, 0o755); err != nil {
		return fmt.Errorf("cannot create cgroups in %s: %w", dir, err)
	}
	if err := os.Remove(p); err != nil {
		return fmt.Errorf("cannot remove probe cgroup %s: %w", p, err)
	}
	return nil
}

// Limits are one group's limits; zero fields are not set.
type Limits struct {
	MemoryBytes int64
	Pids        int64
	CPUCores    float64
}

// cpuPeriod is the CFS period, in µs, used for CPU bandwidth limits.
const cpuPeriod = 100000

// Group is one worker's set of cgroups (one per hierarchy used).
type Group struct {
	Name string
	// V2 is the group's directory on the unified hierarchy ("" none).
	V2 string
	// V1 maps each v1 controller to the group's directory there.
	V1   map[Controller]string
	kill bool
	v2ct bool // V2 carries the controllers (Version 2)
}

// Create makes the group name under every base of the plan and applies
// lim. On error, whatever was created is removed.
func (p *Plan) Create(name string, lim Limits) (*Group, error) {
	g := &Group{Name: name, V1: make(map[Controller]string), kill: p.Kill, v2ct: p.Version == 2}
	fail := func(err error) (*Group, error) {
		_ = g.Remove()
		return nil, fmt.Errorf("cgroup %s: %w", name, err)
	}
	if p.V2Base != "" {
		dir := filepath.Join(p.V2Base, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return fail(err)
		}
		g.V2 = dir
	}
	for c, base := range p.V1Base {
		dir := filepath.Join(base, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return fail(err)
		}
		g.V1[c] = dir
	}
	if err := g.apply(p, lim); err != nil {
		return fail(err)
	}
	return g, nil
}

func (g *Group) apply(p *Plan, lim Limits) error {
	type kv struct{ file, val string }
	var w []kv
	quota := strconv.FormatInt(int64(lim.CPUCores*cpuPeriod+0.5), 10)
	if g.v2ct {
		if lim.MemoryBytes > 0 && p.Enforces(Memory) {
			w = append(w, kv{"memory.max", strconv.FormatInt(lim.MemoryBytes, 10)},
				kv{"memory.swap.max", "0"}, kv{"memory.oom.group", "1"})
		}
		if lim.Pids > 0 && p.Enforces(Pids) {
			w = append(w, kv{"pids.max", strconv.FormatInt(lim.Pids, 10)})
		}
		if lim.CPUCores > 0 && p.Enforces(CPU) {
			w = append(w, kv{"cpu.max", quota + " " + strconv.Itoa(cpuPeriod)})
		}
		for _, x := range w {
			f := filepath.Join(g.V2, x.file)
			if x.file == "memory.swap.max" && !exists(f) {
				continue // no swap accounting
			}
			if err := writeFile(f, x.val); err != nil {
				return err
			}
		}
		return nil
	}
	if dir, ok := g.V1[Memory]; ok && lim.MemoryBytes > 0 {
		v := strconv.FormatInt(lim.MemoryBytes, 10)
		if err := writeFile(filepath.Join(dir, "memory.limit_in_bytes"), v); err != nil {
			return err
		}
		// memory+swap: without it a tree could swap past the limit.
		if f := filepath.Join(dir, "memory.memsw.limit_in_bytes"); exists(f) {
			if err := writeFile(f, v); err != nil {
				return err
			}
		}
	}
	if dir, ok := g.V1[Pids]; ok && lim.Pids > 0 {
		if err := writeFile(filepath.Join(dir, "pids.max"), strconv.FormatInt(lim.Pids, 10)); err != nil {
			return err
		}
	}
	if dir, ok := g.V1[CPU]; ok && lim.CPUCores > 0 {
		if err := writeFile(filepath.Join(dir, "cpu.cfs_period_us"), strconv.Itoa(cpuPeriod)); err != nil {
			return err
		}
		if err := writeFile(filepath.Join(dir, "cpu.cfs_quota_us"), quota); err != nil {
			return err
		}
	}
	return nil
}

// OpenV2 opens the group's v2 directory for clone3(CLONE_INTO_CGROUP)
// (syscall.SysProcAttr.UseCgroupFD). The caller closes it.
func (g *Group) OpenV2() (*os.File, error) {
	if g.V2 == "" {
		return nil, errors.New("cgroup: no v2 group")
	}
	fd, err := unix.Open(g.V2, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: g.V2, Err: err}
	}
	return os.NewFile(uintptr(fd), g.V2), nil
}

// V1Procs lists the cgroup.procs files of the group's v1 cgroups: a
// process that writes "0" to each joins them (see ShimArgs).
func (g *Group) V1Procs() []string {
	var out []string
	for _, c := range []Controller{Memory, Pids, CPU} {
		if dir, ok := g.V1[c]; ok {
			out = append(out, filepath.Join(dir, "cgroup.procs"))
		}
	}
	return out
}

// ShimScript is the /bin/sh program that moves itself into each v1 group
// (writing 0 to cgroup.procs moves the writer) and then execs the worker,
// so the worker's first instruction already runs inside every group.
// Arguments: N, N cgroup.procs paths, then the worker's argv.
const ShimScript = `n=$1; shift; while [ "$n" -gt 0 ]; do echo 0 > "$1" || exit 126; shift; n=$((n-1)); done; exec "$@"`

// ShimArgs returns the argv that runs argv inside the group's v1 cgroups,
// or argv itself when there are none.
func (g *Group) ShimArgs(sh string, argv []string) []string {
	procs := g.V1Procs()
	if len(procs) == 0 {
		return argv
	}
	out := []string{sh, "-c", ShimScript, "workerscope-cgroup-shim", strconv.Itoa(len(procs))}
	out = append(out, procs...)
	return append(out, argv...)
}

// membership is the directory whose cgroup.procs lists the group's
// processes: the v2 group if any, else a v1 one.
func (g *Group) membership() string {
	if g.V2 != "" {
		return g.V2
	}
	for _, c := range []Controller{Pids, Memory, CPU} {
		if dir, ok := g.V1[c]; ok {
			return dir
		}
	}
	return ""
}

// PIDs lists the processes in the group (exact membership: every
// descendant, however re-parented or whatever its environment).
func (g *Group) PIDs() ([]int, error) { return ReadPIDs(g.membership()) }

// ReadPIDs reads dir/cgroup.procs.
func ReadPIDs(dir string) ([]int, error) {
	if dir == "" {
		return nil, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var out []int
	for f := range strings.FieldsSeq(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			out = append(out, pid)
		}
	}
	return out, nil
}

// Signal sends sig to every process in the group; it returns how many.
func (g *Group) Signal(sig syscall.Signal) int {
	pids, _ := g.PIDs()
	n := 0
	for _, pid := range pids {
		if syscall.Kill(pid, sig) == nil {
			n++
		}
	}
	return n
}

// Kill SIGKILLs every process in the group: with cgroup.kill (atomic, no
// fork can escape) when the group has it, else by signalling the listed
// processes.
func (g *Group) Kill() { killDirs(g.membership(), g.kill && g.V2 != "", g.dirs()) }

func killDirs(member string, useKill bool, dirs []string) {
	if useKill && writeFile(filepath.Join(member, "cgroup.kill"), "1") == nil {
		return
	}
	for _, d := range dirs {
		pids, _ := ReadPIDs(d)
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func (g *Group) dirs() []string {
	var out []string
	if g.V2 != "" {
		out = append(out, g.V2)
	}
	for _, c := range []Controller{Memory, Pids, CPU} {
		if d, ok := g.V1[c]; ok {
			out = append(out, d)
		}
	}
	return out
}

// Counters are a group's cumulative limit events.
type Counters struct {
	// OOMKills counts processes the kernel OOM killer killed in the group.
	OOMKills uint64
	// PidsMax counts forks refused at pids.max.
	PidsMax uint64
	// CPUThrottled counts CFS periods in which the group was throttled.
	CPUThrottled uint64
}

// Counters reads the group's limit event counters (missing files read 0).
func (g *Group) Counters() Counters {
	var c Counters
	if g.v2ct {
		c.OOMKills = readKey(filepath.Join(g.V2, "memory.events"), "oom_kill")
		c.PidsMax = readKey(filepath.Join(g.V2, "pids.events"), "max")
		c.CPUThrottled = readKey(filepath.Join(g.V2, "cpu.stat"), "nr_throttled")
		return c
	}
	if d, ok := g.V1[Memory]; ok {
		c.OOMKills = readKey(filepath.Join(d, "memory.oom_control"), "oom_kill")
	}
	if d, ok := g.V1[Pids]; ok {
		c.PidsMax = readKey(filepath.Join(d, "pids.events"), "max")
	}
	if d, ok := g.V1[CPU]; ok {
		c.CPUThrottled = readKey(filepath.Join(d, "cpu.stat"), "nr_throttled")
	}
	return c
}

// readKey reads the value of a "key value" line of a flat-keyed file.
func readKey(file, key string) uint64 {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if ok && k == key {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// Remove kills what is left in the group and removes its directories,
// retrying for up to about two seconds while processes are exiting.
func (g *Group) Remove() error { return removeDirs(g.membership(), g.kill && g.V2 != "", g.dirs()) }

func removeDirs(member string, useKill bool, dirs []string) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		var errs []error
		left := dirs[:0:0]
		for _, d := range dirs {
			if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
				left = append(left, d)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return errors.Join(errs...)
		}
		killDirs(member, useKill, left)
		dirs = left
		time.Sleep(20 * time.Millisecond)
	}
}

// Leftover is a group found by FindLeftovers.
type Leftover struct {
	Name string
	Dirs []string
}

// Bases lists the directories where this layout's worker groups can be:
// the own cgroup on each hierarchy, and its parent on v2 when the own
// cgroup is a LeafName leaf.
func (l Layout) Bases() []string {
	var out []string
	if l.Unified != "" {
		out = append(out, l.Unified)
		if filepath.Base(l.Unified) == LeafName {
			out = append(out, filepath.Dir(l.Unified))
		}
	}
	for _, c := range []Controller{Memory, Pids, CPU} {
		if d, ok := l.V1[c]; ok && !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

// FindLeftovers lists groups whose name starts with prefix in bases,
// grouped by name.
func FindLeftovers(bases []string, prefix string) []Leftover {
	byName := map[string]*Leftover{}
	var names []string
	for _, b := range bases {
		ents, err := os.ReadDir(b)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if !e.IsDir() || !strings.HasPrefix(e.Name(), prefix) {
				continue
			}
			lo := byName[e.Name()]
			if lo == nil {
				lo = &Leftover{Name: e.Name()}
				byName[e.Name()] = lo
				names = append(names, e.Name())
			}
			lo.Dirs = append(lo.Dirs, filepath.Join(b, e.Name()))
		}
	}
	out := make([]Leftover, 0, len(names))
	for _, n := range names {
		out = append(out, *byName[n])
	}
	return out
}

// PIDs lists the processes in every directory of the leftover.
func (lo Leftover) PIDs() []int {
	var out []int
	for _, d := range lo.Dirs {
		pids, _ := ReadPIDs(d)
		for _, p := range pids {
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out
}

// Remove kills the leftover's processes and removes its directories.
func (lo Leftover) Remove() error {
	member := ""
	useKill := false
	for _, d := range lo.Dirs {
		if exists(filepath.Join(d, "cgroup.kill")) {
			member, useKill = d, true
		}
	}
	killDirs(member, useKill, lo.Dirs)
	return removeDirs(member, useKill, lo.Dirs)
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// writeFile writes a cgroupfs control file (no create, no truncate
// surprises: cgroupfs files take one write).
func writeFile(path, val string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(val); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %q to %s: %w", val, path, err)
	}
	return f.Close()
}
