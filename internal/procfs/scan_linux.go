//go:build linux

package procfs

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// Root identifies one process tree to attribute processes to: a worker.
type Root struct {
	// PID of the tree's root process; 0 when it is gone (its orphaned
	// descendants can still be found by Marker).
	PID int
	// StartTime of the root process in clock ticks after boot; 0 skips the
	// check that guards against a reused PID.
	StartTime uint64
	// Marker is the value of the marker environment variable that every
	// descendant inherits; "" when the tree has none.
	Marker string
}

type procKey struct {
	pid   int
	start uint64
}

type envEntry struct {
	value string
	gen   uint64
}

// foreignEntry remembers a process found in no tree.
type foreignEntry struct {
	ino     uint64
	start   uint64
	checked uint64 // the scan that last read it
	seen    uint64 // the scan that last listed it
}

// Scanner takes one pass over /proc, reading /proc/PID/stat once per
// process, and attributes processes to process trees: by ancestry (ppid
// chains) and, for processes that ancestry cannot place (re-parented to
// init or to a subreaper), by an inherited environment marker. Marker
// look-ups are cached per (pid, start time), so a process's environment is
// read at most once in its life. A Scanner is not safe for concurrent use.
type Scanner struct {
	// MarkerKey is the environment variable that carries a tree's Marker.
	MarkerKey string
	// SkipForeign makes Scan skip reading processes that the previous
	// Attribute found in no tree, as long as their /proc/PID inode is
	// unchanged (the same process), re-checking each every RecheckEvery
	// scans. A process outside every tree cannot join one later — its
	// ancestry only moves up when re-parented, and its environment is fixed
	// — so on a host with many unrelated processes a scan reads little more
	// than the workers' trees. Leave it off where a scan must see
	// everything (stopping a tree).
	SkipForeign  bool
	RecheckEvery uint64
	// KeepOpen is how many /proc/PID/stat files of processes in trees a
	// Scanner keeps open between scans, re-reading each with one pread
	// instead of an open, a read and a close (0: none). Each costs the
	// supervisor one file descriptor while its process lives; Close
	// releases them.
	KeepOpen int

	r       *Reader
	self    int
	listing []PIDInode
	inos    []uint64 // parallel to procs
	foreign map[int]foreignEntry
	roots   map[procKey]uint64 // roots of the last Attribute, by generation
	scans   uint64
	skipped int
	procs   []Stat
	index   map[int]int32
	owner   []int32
	path    []int32
	env     map[procKey]envEntry
	gen     uint64
	open    map[int]openStat // tree members' stat files, by PID (KeepOpen)
	nopen   int              // how many of them are open
}

// openStat is a kept-open /proc/PID/stat of the process whose /proc/PID
// directory had inode ino; fd is -1 until the next Scan opens it.
type openStat struct {
	fd   int
	ino  uint64
	seen uint64 // the scan that last listed it
}

// NewScanner returns a Scanner over the proc file system at root ("/proc"
// when empty).
func NewScanner(root, markerKey string) *Scanner {
	return &Scanner{
		MarkerKey: markerKey,
		r:         NewReader(root),
		self:      os.Getpid(),
		index:     make(map[int]int32),
		env:       make(map[procKey]envEntry),
		foreign:   make(map[int]foreignEntry),
		roots:     make(map[procKey]uint64),
		open:      make(map[int]openStat),
	}
}

// Close closes the stat files kept open (KeepOpen). The Scanner stays
// usable; later scans open them again.
func (s *Scanner) Close() {
	for pid := range s.open {
		s.forget(pid)
	}
}

// OpenFiles is how many stat files the Scanner keeps open.
func (s *Scanner) OpenFiles() int { return s.nopen }

// readStat reads pid's stat: through its kept-open file when it has one
// for the same process (same /proc/PID inode); else by path, keeping the
// file open when the last Attribute put pid in a tree and there is room.
func (s *Scanner) readStat(pid int, ino uint64) (Stat, error) {
	o, ok := s.open[pid]
	if !ok {
		return s.r.ReadStat(pid)
	}
	if o.fd >= 0 && o.ino == ino {
		st, err := s.r.ReadStatFD(o.fd)
		if err == nil && st.PID == pid {
			o.seen = s.scans
			s.open[pid] = o
			return st, nil
		}
	}
	if o.ino != ino || o.fd >= 0 {
		s.forget(pid) // another process now, or gone: read afresh
		return s.r.ReadStat(pid)
	}
	if s.nopen >= s.KeepOpen {
		o.seen = s.scans
		s.open[pid] = o // a member still, waiting for room
		return s.r.ReadStat(pid)
	}
	fd, err := s.r.OpenStat(pid)
	if err != nil {
		return Stat{}, err
	}
	st, err := s.r.ReadStatFD(fd)
	if err != nil {
		_ = unix.Close(fd)
		return Stat{}, err
	}
	s.open[pid] = openStat{fd: fd, ino: ino, seen: s.scans}
	s.nopen++
	return st, nil
}

// keep marks the tree members of the last Attribute whose stat files the
// next Scan opens and keeps.
func (s *Scanner) keep() {
	for i, o := range s.owner {
		if o < 0 {
			continue
		}
		pid := s.procs[i].PID
		if _, ok := s.open[pid]; !ok && s.inos[i] != 0 {
			s.open[pid] = openStat{fd: -1, ino: s.inos[i], seen: s.scans}
		}
	}
}

// forget closes pid's kept-open stat file, if any.
func (s *Scanner) forget(pid int) {
	if o, ok := s.open[pid]; ok {
		if o.fd >= 0 {
			_ = unix.Close(o.fd)
			s.nopen--
		}
		delete(s.open, pid)
	}
}

// Reader returns the Scanner's Reader for extra per-process reads (fds)
// between scans.
func (s *Scanner) Reader() *Reader { return s.r }

// Scan reads every process's stat. Processes that vanish mid-scan are
// skipped; an error is returned only when /proc cannot be listed.
func (s *Scanner) Scan() error {
	var err error
	s.listing, err = s.r.PIDInodes(s.listing[:0])
	if err != nil {
		return err
	}
	s.scans++
	recheck := max(s.RecheckEvery, 1)
	s.procs = s.procs[:0]
	s.inos = s.inos[:0]
	clear(s.index)
	s.skipped = 0
	for _, li := range s.listing {
		pid := li.PID
		if s.SkipForeign {
			if f, ok := s.foreign[pid]; ok {
				if f.ino == li.Ino && (s.scans-f.checked)%recheck != 0 {
					f.seen = s.scans
					s.foreign[pid] = f
					s.skipped++
					continue
				}
				delete(s.foreign, pid) // changed or due: read it again
			}
		}
		st, err := s.readStat(pid, li.Ino)
		if err != nil {
			continue // exited meanwhile, or unreadable: not attributable this pass
		}
		s.index[pid] = int32(len(s.procs))
		s.procs = append(s.procs, st)
		s.inos = append(s.inos, li.Ino)
	}
	if s.SkipForeign {
		for pid, f := range s.foreign {
			if f.seen != s.scans {
				delete(s.foreign, pid) // exited
			}
		}
	}
	for pid, o := range s.open {
		if o.seen != s.scans {
			s.forget(pid) // exited, or skipped as foreign
		}
	}
	return nil
}

// Skipped is how many processes the last Scan skipped as known foreign.
func (s *Scanner) Skipped() int { return s.skipped }

// Procs returns the processes of the last Scan (valid until the next Scan).
func (s *Scanner) Procs() []Stat { return s.procs }

// Lookup returns the position of pid in Procs, or -1.
func (s *Scanner) Lookup(pid int) int {
	if i, ok := s.index[pid]; ok {
		return int(i)
	}
	return -1
}

const (
	ownerUnknown = -2
	ownerNone    = -1
)

// Attribute assigns the processes of the last Scan to roots and returns, per
// root, the positions in Procs of its tree's processes (the root first when
// it is alive). Only processes started at or after minStart (clock ticks
// after boot) are checked for a marker; pass the oldest root's start time.
// dst is reused when it has room.
func (s *Scanner) Attribute(roots []Root, minStart uint64, dst [][]int) [][]int {
	if s.SkipForeign {
		s.admitNewRoots(roots)
	}
	n := len(s.procs)
	s.owner = append(s.owner[:0], make([]int32, n)...)
	for i := range s.owner {
		s.owner[i] = ownerUnknown
	}
	markers := make(map[string]int32, len(roots))
	for k, rt := range roots {
		if rt.Marker != "" {
			markers[rt.Marker] = int32(k)
		}
		if rt.PID <= 0 {
			continue
		}
		if i, ok := s.index[rt.PID]; ok && (rt.StartTime == 0 || s.procs[i].StartTime == rt.StartTime) {
			s.owner[i] = int32(k)
		}
	}
	for i := range s.procs {
		s.resolve(int32(i))
	}
	if len(markers) > 0 && s.MarkerKey != "" {
		s.gen++
		changed := false
		for i := range s.procs {
			p := &s.procs[i]
			if s.owner[i] != ownerNone || p.StartTime < minStart || p.PID == s.self || p.PPID == 2 || p.PID == 2 {
				continue
			}
			if k, ok := markers[s.marker(p)]; ok {
				s.owner[i] = k
				changed = true
			}
		}
		if changed {
			// Descendants of a marker-attributed process belong to it too,
			// even if they scrubbed their environment.
			for i := range s.owner {
				if s.owner[i] == ownerNone {
					s.owner[i] = ownerUnknown
				}
			}
			for i := range s.procs {
				s.resolve(int32(i))
			}
		}
		for k, e := range s.env {
			if e.gen != s.gen {
				delete(s.env, k)
			}
		}
	}
	if s.SkipForeign {
		for i, o := range s.owner {
			if o == ownerNone && s.procs[i].PID != s.self {
				p := &s.procs[i]
				s.foreign[p.PID] = foreignEntry{ino: s.inos[i], start: p.StartTime, checked: s.scans, seen: s.scans}
			}
		}
	}
	if s.KeepOpen > 0 {
		s.keep()
	}
	if cap(dst) >= len(roots) {
		dst = dst[:len(roots)]
	} else {
		dst = make([][]int, len(roots))
	}
	for k := range dst {
		dst[k] = dst[k][:0]
	}
	for k, rt := range roots {
		if rt.PID > 0 {
			if i, ok := s.index[rt.PID]; ok && s.owner[i] == int32(k) {
				dst[k] = append(dst[k], int(i))
			}
		}
	}
	for i, o := range s.owner {
		if o >= 0 && !(roots[o].PID > 0 && s.procs[i].PID == roots[o].PID) {
			dst[o] = append(dst[o], i)
		}
	}
	return dst
}

// resolve follows i's parent chain until it meets a process whose owner is
// known, then gives that owner to every process on the way.
func (s *Scanner) resolve(i int32) int32 {
	s.path = s.path[:0]
	owner := int32(ownerNone)
	for j := i; ; {
		if o := s.owner[j]; o != ownerUnknown {
			owner = o
			break
		}
		s.path = append(s.path, j)
		ppid := s.procs[j].PPID
		next, ok := s.index[ppid]
		if ppid <= 1 || !ok || len(s.path) > len(s.procs) {
			break
		}
		j = next
	}
	for _, j := range s.path {
		s.owner[j] = owner
	}
	return owner
}

// marker returns the process's marker value, cached per (pid, start time).
func (s *Scanner) marker(p *Stat) string {
	key := procKey{p.PID, p.StartTime}
	if e, ok := s.env[key]; ok {
		e.gen = s.gen
		s.env[key] = e
		return e.value
	}
	v, _, err := s.r.EnvValue(p.PID, s.MarkerKey)
	if errors.Is(err, ErrNoEnviron) || isGone(err) {
		return "" // unknown for now (exiting or gone): ask again next pass
	}
	if err != nil {
		v = "" // unreadable (another user's process): not ours
	}
	s.env[key] = envEntry{value: v, gen: s.gen}
	return v
}

// Owner returns the index in the last Attribute's roots of the tree that
// process i (a position in Procs) belongs to, or -1.
func (s *Scanner) Owner(i int) int {
	if i < 0 || i >= len(s.owner) || s.owner[i] < 0 {
		return -1
	}
	return int(s.owner[i])
}

// EnvCacheLen reports how many marker look-ups are cached (for leak checks).
func (s *Scanner) EnvCacheLen() int { return len(s.env) }

func isGone(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, errESRCH)
}

// readNow adds pid to the current Scan's processes if the Scan skipped it.
func (s *Scanner) readNow(pid int, ino uint64) {
	if _, ok := s.index[pid]; ok {
		return
	}
	if st, err := s.r.ReadStat(pid); err == nil {
		s.index[pid] = int32(len(s.procs))
		s.procs = append(s.procs, st)
		s.inos = append(s.inos, ino)
	}
}

// admitNewRoots handles roots that the previous Attribute did not have (a
// worker spawned since): processes started at or after such a root may be
// in its tree although they were recorded as foreign, so they are
// forgotten and read now (the last Scan skipped them), as is the root.
func (s *Scanner) admitNewRoots(roots []Root) {
	gen := s.scans
	for _, rt := range roots {
		if rt.PID <= 0 {
			continue
		}
		key := procKey{rt.PID, rt.StartTime}
		if _, known := s.roots[key]; !known {
			for pid, f := range s.foreign {
				if f.start >= rt.StartTime {
					delete(s.foreign, pid)
					s.readNow(pid, f.ino) // skipped by this Scan: read it for this pass
				}
			}
			s.readNow(rt.PID, 0)
		}
		s.roots[key] = gen
	}
	for key, g := range s.roots {
		if g != gen {
			delete(s.roots, key)
		}
	}
}
