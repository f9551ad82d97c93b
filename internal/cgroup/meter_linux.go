//go:build linux

package cgroup

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Usage is what a group's own files say about every process it ever held:
// the kernel charges each figure to the group as it happens, so exited
// processes and descendants that escaped their ancestry are included. A
// figure the group cannot give (no such file) has its Has flag false.
type Usage struct {
	// HasCPU: CPUUser and CPUSystem are from cpu.stat (user_usec,
	// system_usec: every v2 group has it, controller or not) or cpuacct
	// (usage_user, usage_sys on a v1 cpu,cpuacct group). Cumulative since
	// the group was made; they never decrease.
	HasCPU             bool
	CPUUser, CPUSystem time.Duration
	// HasMemory: MemoryBytes is the group's working set, as the kubelet
	// and cAdvisor reckon it: the memory charged to the group
	// (memory.current on v2 with the memory controller,
	// memory.usage_in_bytes on v1: anonymous memory and the page cache it
	// brought in) less its inactive file pages (memory.stat inactive_file,
	// v1 total_inactive_file), the cache the kernel reclaims first. An
	// `npm install` that read a gigabyte of files does not look like a
	// leak. MemoryCharged is the charge itself; the two are equal when
	// memory.stat cannot be read.
	HasMemory     bool
	MemoryBytes   int64
	MemoryCharged int64
	// HasTasks: Tasks is pids.current, the tasks (threads, and exited ones
	// not yet reaped) the group holds, as pids.max counts them.
	HasTasks bool
	Tasks    int64
}

// Meter re-reads one group's usage files through descriptors it keeps
// open: one pread per figure, no path lookup. It is safe for concurrent
// use; Close waits for reads in progress.
type Meter struct {
	mu sync.RWMutex
	// descriptors, -1 when the group has no such file
	cpuStat   int    // v2 cpu.stat
	acctUser  int    // v1 cpuacct.usage_user (ns)
	acctSys   int    // v1 cpuacct.usage_sys (ns)
	memory    int    // memory.current or memory.usage_in_bytes
	memStat   int    // memory.stat of the same group
	inactive  string // memStat's key for inactive file pages
	tasks     int    // pids.current
	procs     int    // cgroup.procs of the membership group
	closed    bool
	openCount int
}

// What a Meter reads: Read takes a mask so that a caller that needs only
// CPU (a command's cost) pays for one file.
const (
	ReadCPU = 1 << iota
	ReadMemory
	ReadTasks
	ReadAll = ReadCPU | ReadMemory | ReadTasks
)

// OpenMeter opens the group's usage files. Files the group does not have
// are skipped (their figures are never set); it fails only when none of
// them can be opened.
func (g *Group) OpenMeter() (*Meter, error) {
	m := &Meter{cpuStat: -1, acctUser: -1, acctSys: -1, memory: -1, memStat: -1, tasks: -1, procs: -1}
	var errs []error
	open := func(dir, name string) int {
		if dir == "" {
			return -1
		}
		p := filepath.Join(dir, name)
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			if !errors.Is(err, unix.ENOENT) {
				errs = append(errs, &os.PathError{Op: "open", Path: p, Err: err})
			}
			return -1
		}
		m.openCount++
		return fd
	}
	m.cpuStat = open(g.V2, "cpu.stat")
	if m.cpuStat < 0 {
		if d := g.V1[CPU]; d != "" {
			m.acctUser, m.acctSys = open(d, "cpuacct.usage_user"), open(d, "cpuacct.usage_sys")
		}
	}
	if g.v2ct {
		m.memory = open(g.V2, "memory.current")
		m.tasks = open(g.V2, "pids.current")
		if m.memory >= 0 {
			m.memStat, m.inactive = open(g.V2, "memory.stat"), "inactive_file"
		}
	} else {
		m.memory = open(g.V1[Memory], "memory.usage_in_bytes")
		m.tasks = open(g.V1[Pids], "pids.current")
		if m.memory >= 0 {
			m.memStat, m.inactive = open(g.V1[Memory], "memory.stat"), "total_inactive_file"
		}
	}
	m.procs = open(g.membership(), "cgroup.procs")
	if m.openCount == 0 {
		errs = append(errs, errors.New("no usage files"))
		return nil, fmt.Errorf("cgroup %s: meter: %w", g.Name, errors.Join(errs...))
	}
	return m, nil
}

// Files is how many descriptors the Meter holds.
func (m *Meter) Files() int { return m.openCount }

// Read reads the figures what asks for (ReadCPU, ReadMemory, ReadTasks)
// into u, setting each Has flag it could read and clearing the others.
func (m *Meter) Read(what int, u *Usage) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	*u = Usage{}
	if m.closed {
		return errors.New("cgroup: meter closed")
	}
	var buf [512]byte
	var errs []error
	if what&ReadCPU != 0 {
		switch {
		case m.cpuStat >= 0:
			b, err := pread(m.cpuStat, buf[:])
			if err == nil {
				user, okU := flatKey(b, "user_usec")
				sys, okS := flatKey(b, "system_usec")
				if okU && okS {
					u.HasCPU = true
					u.CPUUser, u.CPUSystem = time.Duration(user)*time.Microsecond, time.Duration(sys)*time.Microsecond
				}
			}
			errs = append(errs, err)
		case m.acctUser >= 0 && m.acctSys >= 0:
			user, errU := preadUint(m.acctUser, buf[:])
			sys, errS := preadUint(m.acctSys, buf[:])
			if errU == nil && errS == nil {
				u.HasCPU = true
				u.CPUUser, u.CPUSystem = time.Duration(user), time.Duration(sys)
			}
			errs = append(errs, errU, errS)
		}
	}
	if what&ReadMemory != 0 && m.memory >= 0 {
		v, err := preadUint(m.memory, buf[:])
		if err == nil {
			u.HasMemory, u.MemoryBytes, u.MemoryCharged = true, int64(v), int64(v)
			if m.memStat >= 0 {
				// memory.stat is a few dozen lines (≈ 1.5 KiB on v2).
				var stat [4096]byte
				b, serr := pread(m.memStat, stat[:])
				if inactive, ok := flatKey(b, m.inactive); serr == nil && ok {
					u.MemoryBytes = int64(v - min(inactive, v))
				}
				errs = append(errs, serr)
			}
		}
		errs = append(errs, err)
	}
	if what&ReadTasks != 0 && m.tasks >= 0 {
		v, err := preadUint(m.tasks, buf[:])
		if err == nil {
			u.HasTasks, u.Tasks = true, int64(v)
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// PIDs appends the group's processes (cgroup.procs, one pread) to dst.
// Exited processes are no longer listed, even before they are reaped.
func (m *Meter) PIDs(dst []int) ([]int, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed || m.procs < 0 {
		return dst, errors.New("cgroup: no membership file")
	}
	var small [1024]byte
	buf := small[:]
	for {
		n, err := unix.Pread(m.procs, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return dst, fmt.Errorf("cgroup: read cgroup.procs: %w", err)
		}
		if n == len(buf) && len(buf) < 4<<20 { // a big group: read it whole
			buf = make([]byte, 4*len(buf))
			continue
		}
		for f := range bytes.FieldsSeq(buf[:n]) {
			if pid, ok := parseUint(f); ok && pid > 0 && pid < 1<<31 {
				dst = append(dst, int(pid))
			}
		}
		return dst, nil
	}
}

// Close closes the descriptors; later reads fail.
func (m *Meter) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	for _, fd := range []int{m.cpuStat, m.acctUser, m.acctSys, m.memory, m.memStat, m.tasks, m.procs} {
		if fd >= 0 {
			_ = unix.Close(fd)
		}
	}
	return nil
}

func pread(fd int, buf []byte) ([]byte, error) {
	for {
		n, err := unix.Pread(fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("cgroup: pread: %w", err)
		}
		return buf[:n], nil
	}
}

func preadUint(fd int, buf []byte) (uint64, error) {
	b, err := pread(fd, buf)
	if err != nil {
		return 0, err
	}
	v, ok := parseUint(bytes.TrimSpace(b))
	if !ok {
		return 0, fmt.Errorf("cgroup: not a number: %q", b)
	}
	return v, nil
}

// flatKey finds "key value" in a flat-keyed file's contents.
func flatKey(b []byte, key string) (uint64, bool) {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		k, v, ok := bytes.Cut(line, []byte{' '})
		if ok && string(k) == key {
			return parseUint(v)
		}
	}
	return 0, false
}

func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}
