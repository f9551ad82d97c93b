package workers

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Limit names, as used in LimitError.Limit, Stats.LimitHits, the
// "worker_limit" event and LimitsInfo.Enforcement.
const (
	LimitMemory = "memory"
	LimitPids   = "pids"
	LimitCPU    = "cpu"
)

// LimitNames lists every limit name.
var LimitNames = []string{LimitMemory, LimitPids, LimitCPU}

// CgroupMode says whether worker limits may, must or must not use cgroups.
type CgroupMode string

// Cgroup modes.
const (
	// CgroupsAuto (the default, also "") uses cgroups when usable and the
	// supervisor watchdog otherwise. With no limit set every worker still
	// gets a controller-less cgroup when one can be made (exact
	// membership, whole-tree CPU, kill-all), and none otherwise.
	CgroupsAuto CgroupMode = "auto"
	// CgroupsOff never uses cgroups: limits are enforced by the watchdog.
	CgroupsOff CgroupMode = "off"
	// CgroupsRequired makes New fail unless cgroups enforce every limit set
	// (and, with no limits set, gives every worker a cgroup anyway for
	// exact membership and kill-all).
	CgroupsRequired CgroupMode = "required"
)

// Tier names how limits are enforced.
type Tier string

// Enforcement tiers, best first.
const (
	TierCgroup2  Tier = "cgroup2"  // cgroup v2 groups: kernel-enforced limits (or, with none set, membership alone)
	TierCgroup1  Tier = "cgroup1"  // cgroup v1 controllers (hybrid), v2 membership: kernel-enforced (or membership alone)
	TierWatchdog Tier = "watchdog" // supervisor measures trees and stops offenders
	TierOff      Tier = "off"      // no limits set and no cgroups (or nothing can enforce the limits)
)

// LimitsInfo describes the limits a Manager applies and how.
type LimitsInfo struct {
	Tier Tier `json:"tier"`
	// Reason says why this tier was chosen (and why better ones were not).
	Reason string `json:"reason"`
	// MemoryMax, PidsMax and CPUMax are the per-worker limits (0 = none).
	MemoryMax int64   `json:"memory_max"`
	PidsMax   int64   `json:"pids_max"`
	CPUMax    float64 `json:"cpu_max"`
	// Enforcement maps each limit set to what enforces it: "cgroup2",
	// "cgroup1", "watchdog" or "none" (CPU without cgroups).
	Enforcement map[string]string `json:"enforcement"`
	// Cgroups is true when every worker gets its own cgroup (exact
	// membership, kill-all, leftover recovery by cgroup).
	Cgroups bool `json:"cgroups"`
}

// LimitError says which limit a worker's tree hit.
type LimitError struct {
	// Limit is LimitMemory or LimitPids.
	Limit string
	// Max is the limit: bytes for memory, processes/threads for pids.
	Max int64
	// Used is what the watchdog measured (0 when the kernel acted).
	Used int64
	// By is "watchdog" or "oom_killer".
	By string
}

func (e *LimitError) Error() string {
	var lim, used string
	if e.Limit == LimitMemory {
		lim, used = FormatByteSize(e.Max), FormatByteSize(e.Used)
	} else {
		lim, used = strconv.FormatInt(e.Max, 10), strconv.FormatInt(e.Used, 10)
	}
	msg := fmt.Sprintf("worker %s limit %s exceeded", e.Limit, lim)
	switch {
	case e.By == "oom_killer":
		msg += " (killed by the kernel OOM killer in the worker's cgroup)"
	case e.Used > 0:
		msg += " (tree at " + used + ")"
	}
	return msg
}

// Is makes errors.Is(err, ErrLimitExceeded) true.
func (e *LimitError) Is(target error) bool { return target == ErrLimitExceeded }

// ErrLimitExceeded matches errors of workers stopped for exceeding a limit.
var ErrLimitExceeded = errors.New("workers: worker resource limit exceeded")

// ParseByteSize parses a memory size: a non-negative integer or decimal
// number of bytes with an optional unit, e.g. "0", "1048576", "512MiB",
// "2GiB", "1.5G", "100k". Binary units (KiB, MiB, GiB, TiB; K, M, G, T and
// KB, MB, ... are read as binary too, like most tools) multiply by 1024ⁿ.
// The result must fit in an int64.
func ParseByteSize(s string) (int64, error) {
	in := s
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("invalid size %q: empty", in)
	}
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	num, unit := s[:i], strings.TrimSpace(s[i:])
	if num == "" {
		return 0, fmt.Errorf("invalid size %q: want a number with an optional unit such as 512MiB or 2GiB", in)
	}
	mult := float64(1)
	switch strings.ToLower(unit) {
	case "", "b":
	case "k", "kb", "kib":
		mult = 1 << 10
	case "m", "mb", "mib":
		mult = 1 << 20
	case "g", "gb", "gib":
		mult = 1 << 30
	case "t", "tb", "tib":
		mult = 1 << 40
	default:
		return 0, fmt.Errorf("invalid size %q: unknown unit %q (use B, KiB, MiB, GiB or TiB)", in, unit)
	}
	if !strings.Contains(num, ".") {
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil || (mult > 1 && n > math.MaxInt64/int64(mult)) {
			return 0, fmt.Errorf("invalid size %q: too large", in)
		}
		return n * int64(mult), nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: bad number %q", in, num)
	}
	v := f * mult
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("invalid size %q: too large", in)
	}
	return int64(v), nil
}

// FormatByteSize formats n bytes with a binary unit, e.g. "512MiB".
func FormatByteSize(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v := float64(n)
	u := 0
	for v >= 1024 && u < len(units)-1 {
		v /= 1024
		u++
	}
	if v == math.Trunc(v) {
		return strconv.FormatFloat(v, 'f', 0, 64) + units[u]
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + units[u]
}

// maxCPUCores bounds CPU limits (cgroup quotas are int64 µs per period).
const maxCPUCores = 1 << 20

// ParseCPUCores parses a CPU bandwidth limit in cores, e.g. "0.5" or "2";
// "0" means no limit. Values must be at least 0.01 cores.
func ParseCPUCores(s string) (float64, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("invalid CPU limit %q: want a number of cores such as 0.5 or 2", s)
	}
	if err := checkCPU(f); err != nil {
		return 0, fmt.Errorf("invalid CPU limit %q: %w", s, err)
	}
	return f, nil
}

func checkCPU(f float64) error {
	switch {
	case f < 0:
		return errors.New("negative")
	case f > 0 && f < 0.01:
		return errors.New("below 0.01 cores")
	case f > maxCPUCores:
		return fmt.Errorf("above %d cores", maxCPUCores)
	}
	return nil
}

// ParsePidsMax parses a process/thread count limit; "0" means no limit.
func ParsePidsMax(s string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid process limit %q: want a whole number", s)
	}
	if n < 0 {
		return 0, fmt.Errorf("invalid process limit %q: negative", s)
	}
	if n > 1<<22 {
		return 0, fmt.Errorf("invalid process limit %q: above the kernel's maximum of %d", s, 1<<22)
	}
	return n, nil
}

// ParseCgroupMode parses "auto", "off" or "required".
func ParseCgroupMode(s string) (CgroupMode, error) {
	switch m := CgroupMode(strings.ToLower(strings.TrimSpace(s))); m {
	case CgroupsAuto, CgroupsOff, CgroupsRequired:
		return m, nil
	}
	return "", fmt.Errorf("invalid cgroup mode %q: want auto, off or required", s)
}

func (c *Config) validateLimits() []error {
	var errs []error
	if c.MemoryMax < 0 {
		errs = append(errs, fieldErr("MemoryMax", "must be ≥ 0, got %d", c.MemoryMax))
	} else if c.MemoryMax > 0 && c.MemoryMax < 1<<20 {
		errs = append(errs, fieldErr("MemoryMax", "must be 0 or ≥ 1MiB, got %d bytes", c.MemoryMax))
	}
	if c.PidsMax < 0 {
		errs = append(errs, fieldErr("PidsMax", "must be ≥ 0, got %d", c.PidsMax))
	}
	if err := checkCPU(c.CPUMax); err != nil || math.IsNaN(c.CPUMax) {
		errs = append(errs, fieldErr("CPUMax", "%v: invalid", c.CPUMax))
	}
	if _, err := ParseCgroupMode(string(c.Cgroups)); err != nil {
		errs = append(errs, fieldErr("Cgroups", "%w", err))
	}
	if c.WatchdogInterval <= 0 {
		errs = append(errs, fieldErr("WatchdogInterval", "must be > 0, got %s", c.WatchdogInterval))
	}
	return errs
}

func (c *Config) hasLimits() bool { return c.MemoryMax > 0 || c.PidsMax > 0 || c.CPUMax > 0 }

func (c *Config) setLimitDefaults() {
	if c.Cgroups == "" {
		c.Cgroups = CgroupsAuto
	}
	if c.WatchdogInterval == 0 {
		c.WatchdogInterval = time.Second
	}
}
