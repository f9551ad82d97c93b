package procfs

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// ClockTicks is USER_HZ, the unit of the CPU and start-time fields of
// /proc/PID/stat. It is 100 on every Linux architecture Go supports.
const ClockTicks = 100

// Stat holds the fields of /proc/PID/stat that workerscope uses.
type Stat struct {
	PID     int
	PPID    int
	PGRP    int
	Session int
	// State is the one-letter process state (R, S, D, Z, T, ...).
	State byte
	// UTime and STime are the process's own user and system CPU time,
	// in clock ticks.
	UTime, STime uint64
	// CUTime and CSTime are the CPU times of waited-for children, in
	// clock ticks: a child's time moves here when its parent reaps it.
	CUTime, CSTime uint64
	// MinFlt and MajFlt are the process's own minor and major page
	// faults; CMinFlt and CMajFlt those of its waited-for children (they
	// move like CUTime).
	MinFlt, CMinFlt, MajFlt, CMajFlt uint64
	NumThreads                       int64
	// StartTime is the process start in clock ticks after boot. With the
	// PID it identifies a process across PID reuse.
	StartTime uint64
	// VSize is the virtual memory size in bytes.
	VSize uint64
	// RSS is the resident set size in pages.
	RSS int64
}

// ErrNoEnviron reports an empty /proc/PID/environ: the process is exiting,
// a zombie, or a kernel thread, so its environment cannot be known.
var ErrNoEnviron = errors.New("environment not available")

// ErrMalformed reports a /proc/PID/stat line that could not be parsed.
var ErrMalformed = errors.New("procfs: malformed stat line")

// ParseStat parses the contents of /proc/PID/stat. The command name (field 2)
// may hold spaces and parentheses, so parsing resumes after the last ')'.
func ParseStat(b []byte) (Stat, error) {
	var s Stat
	open := bytes.IndexByte(b, '(')
	closing := bytes.LastIndexByte(b, ')')
	if open <= 0 || closing < open || closing+2 >= len(b) {
		return s, ErrMalformed
	}
	pid, ok := atoi(bytes.TrimSpace(b[:open]))
	if !ok {
		return s, ErrMalformed
	}
	s.PID = int(pid)
	rest := b[closing+2:]
	// Fields after comm, 1-based as in proc(5) minus 2: index 0 is field 3 (state).
	field := 0
	for len(rest) > 0 && field <= 21 {
		sp := bytes.IndexByte(rest, ' ')
		var tok []byte
		if sp < 0 {
			tok, rest = bytes.TrimRight(rest, "\n"), nil
		} else {
			tok, rest = rest[:sp], rest[sp+1:]
		}
		switch field {
		case 0:
			if len(tok) != 1 {
				return s, ErrMalformed
			}
			s.State = tok[0]
		case 1, 2, 3, 7, 8, 9, 10, 11, 12, 13, 14, 17, 19, 20, 21:
			v, ok := atoi(tok)
			if !ok {
				return s, fmt.Errorf("%w: field %d %q", ErrMalformed, field+3, tok)
			}
			switch field {
			case 1:
				s.PPID = int(v)
			case 2:
				s.PGRP = int(v)
			case 3:
				s.Session = int(v)
			case 7:
				s.MinFlt = uint64(v)
			case 8:
				s.CMinFlt = uint64(v)
			case 9:
				s.MajFlt = uint64(v)
			case 10:
				s.CMajFlt = uint64(v)
			case 11:
				s.UTime = uint64(v)
			case 12:
				s.STime = uint64(v)
			case 13:
				s.CUTime = uint64(v)
			case 14:
				s.CSTime = uint64(v)
			case 17:
				s.NumThreads = v
			case 19:
				s.StartTime = uint64(v)
			case 20:
				s.VSize = uint64(v)
			case 21:
				s.RSS = v
			}
		}
		field++
	}
	if field <= 21 {
		return s, fmt.Errorf("%w: %d fields", ErrMalformed, field+2)
	}
	return s, nil
}

// atoi parses a possibly negative decimal without allocating.
func atoi(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	neg := false
	if b[0] == '-' {
		neg, b = true, b[1:]
		if len(b) == 0 {
			return 0, false
		}
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// appendProcPath appends "<root>/<pid>/<file>\x00" to dst.
func appendProcPath(dst []byte, root string, pid int, file string) []byte {
	dst = append(dst, root...)
	dst = append(dst, '/')
	dst = strconv.AppendInt(dst, int64(pid), 10)
	if file != "" {
		dst = append(dst, '/')
		dst = append(dst, file...)
	}
	return append(dst, 0)
}

// parseStatusUIDs reads the "Uid:" line of /proc/PID/status: real,
// effective, saved and file-system user IDs.
func parseStatusUIDs(b []byte) ([4]uint32, error) {
	var out [4]uint32
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		rest, ok := bytes.CutPrefix(line, []byte("Uid:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 4 {
			return out, fmt.Errorf("procfs: malformed Uid line %q", line)
		}
		for i, s := range f {
			n, err := strconv.ParseUint(string(s), 10, 32)
			if err != nil {
				return out, fmt.Errorf("procfs: malformed Uid line %q: %w", line, err)
			}
			out[i] = uint32(n)
		}
		return out, nil
	}
	return out, errors.New("procfs: no Uid line in status")
}
