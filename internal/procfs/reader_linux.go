//go:build linux

package procfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Reader reads /proc with reused buffers and raw system calls so that a
// pass over thousands of processes allocates next to nothing. A Reader is
// not safe for concurrent use; give each goroutine its own.
type Reader struct {
	root    string
	path    []byte
	buf     []byte
	dirents []byte
}

// NewReader returns a Reader for the proc file system mounted at root
// ("/proc" when empty).
func NewReader(root string) *Reader {
	if root == "" {
		root = "/proc"
	}
	return &Reader{
		root:    root,
		path:    make([]byte, 0, 64),
		buf:     make([]byte, 4096),
		dirents: make([]byte, 32<<10),
	}
}

// openAt opens the NUL-terminated path in r.path without allocating.
func (r *Reader) open(flags int) (int, error) {
	fd, _, errno := unix.Syscall6(unix.SYS_OPENAT, atFDCWD,
		uintptr(unsafe.Pointer(&r.path[0])), uintptr(flags|unix.O_CLOEXEC), 0, 0, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}

// readFile reads the whole file named by r.path into r.buf, growing it up
// to max bytes, and returns the bytes read.
func (r *Reader) readFile(max int) ([]byte, error) {
	fd, err := r.open(unix.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	n := 0
	for {
		if n == len(r.buf) {
			if len(r.buf) >= max {
				return r.buf[:n], io.ErrShortBuffer
			}
			nb := make([]byte, min(2*len(r.buf), max))
			copy(nb, r.buf[:n])
			r.buf = nb
		}
		m, err := unix.Read(fd, r.buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if m == 0 {
			return r.buf[:n], nil
		}
		n += m
	}
}

// ReadStat reads and parses /proc/PID/stat.
func (r *Reader) ReadStat(pid int) (Stat, error) {
	r.path = appendProcPath(r.path[:0], r.root, pid, "stat")
	b, err := r.readFile(64 << 10)
	if err != nil {
		return Stat{}, fmt.Errorf("procfs: read %d/stat: %w", pid, err)
	}
	return ParseStat(b)
}

// OpenStat opens /proc/PID/stat for ReadStatFD. The descriptor stays bound
// to that process: once it has been reaped, reads fail with ESRCH even if
// the PID is reused. The caller closes it.
func (r *Reader) OpenStat(pid int) (int, error) {
	r.path = appendProcPath(r.path[:0], r.root, pid, "stat")
	fd, err := r.open(unix.O_RDONLY)
	if err != nil {
		return -1, fmt.Errorf("procfs: open %d/stat: %w", pid, err)
	}
	return fd, nil
}

// ReadStatFD re-reads a stat file opened with OpenStat: one pread, where
// ReadStat costs an open, a read and a close (about 2.5× the CPU).
func (r *Reader) ReadStatFD(fd int) (Stat, error) {
	for {
		n, err := unix.Pread(fd, r.buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return Stat{}, fmt.Errorf("procfs: pread stat: %w", err)
		}
		if n == len(r.buf) { // a stat line longer than the buffer: grow once and retry
			if len(r.buf) >= 64<<10 {
				return Stat{}, fmt.Errorf("procfs: pread stat: %w", io.ErrShortBuffer)
			}
			r.buf = make([]byte, 2*len(r.buf))
			continue
		}
		return ParseStat(r.buf[:n])
	}
}

// CountFDs returns the number of open file descriptors of pid. Linux 6.2+
// reports it as the size of /proc/PID/fd, one stat call; older kernels
// report 0 there, and the directory is counted instead.
func (r *Reader) CountFDs(pid int) (int, error) {
	r.path = appendProcPath(r.path[:0], r.root, pid, "fd")
	var st unix.Stat_t
	_, _, errno := unix.Syscall6(sysFstatat, atFDCWD,
		uintptr(unsafe.Pointer(&r.path[0])), uintptr(unsafe.Pointer(&st)), 0, 0, 0)
	if errno != 0 {
		return 0, fmt.Errorf("procfs: stat %d/fd: %w", pid, errno)
	}
	if st.Size > 0 {
		return int(st.Size), nil
	}
	fd, err := r.open(unix.O_RDONLY | unix.O_DIRECTORY)
	if err != nil {
		return 0, fmt.Errorf("procfs: open %d/fd: %w", pid, err)
	}
	defer unix.Close(fd)
	count := 0
	err = r.eachDirent(fd, func(name []byte, _ uint64) {
		if !(len(name) == 1 && name[0] == '.') && !(len(name) == 2 && name[0] == '.' && name[1] == '.') {
			count++
		}
	})
	return count, err
}

// EnvValue returns the value of the environment variable key in
// /proc/PID/environ (the environment the process started with), and whether
// it was present. Processes of other users are unreadable unless root.
func (r *Reader) EnvValue(pid int, key string) (string, bool, error) {
	r.path = appendProcPath(r.path[:0], r.root, pid, "environ")
	b, err := r.readFile(4 << 20)
	if err != nil && !errors.Is(err, io.ErrShortBuffer) {
		return "", false, fmt.Errorf("procfs: read %d/environ: %w", pid, err)
	}
	if len(b) == 0 {
		// A process that is exiting (its memory already released) or a
		// zombie shows an empty environment: unknown, not "absent".
		return "", false, fmt.Errorf("procfs: %d/environ: %w", pid, ErrNoEnviron)
	}
	for len(b) > 0 {
		i := bytes.IndexByte(b, 0)
		var kv []byte
		if i < 0 {
			kv, b = b, nil
		} else {
			kv, b = b[:i], b[i+1:]
		}
		if len(kv) > len(key) && kv[len(key)] == '=' && string(kv[:len(key)]) == key {
			return string(kv[len(key)+1:]), true, nil
		}
	}
	return "", false, nil
}

// PIDs appends the PIDs listed in the proc root to dst.
func (r *Reader) PIDs(dst []int) ([]int, error) {
	err := r.eachPID(func(pid int, _ uint64) { dst = append(dst, pid) })
	return dst, err
}

// PIDInode is a PID listed in the proc root with the inode number of its
// /proc/PID directory. The inode stays the same while the same process's
// directory stays cached, and a new process with a reused PID gets a new
// one, so an unchanged inode means "the same process as before".
type PIDInode struct {
	PID int
	Ino uint64
}

// PIDInodes appends the PIDs listed in the proc root, with their inodes.
func (r *Reader) PIDInodes(dst []PIDInode) ([]PIDInode, error) {
	err := r.eachPID(func(pid int, ino uint64) { dst = append(dst, PIDInode{pid, ino}) })
	return dst, err
}

// eachPID calls fn with each numeric entry of the proc root.
func (r *Reader) eachPID(fn func(pid int, ino uint64)) error {
	r.path = append(append(r.path[:0], r.root...), 0)
	fd, err := r.open(unix.O_RDONLY | unix.O_DIRECTORY)
	if err != nil {
		return fmt.Errorf("procfs: open %s: %w", r.root, err)
	}
	defer unix.Close(fd)
	return r.eachDirent(fd, func(name []byte, ino uint64) {
		if v, ok := atoi(name); ok && v > 0 {
			fn(int(v), ino)
		}
	})
}

// Children appends the PIDs of the children of every thread of pid, read
// from /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN).
func (r *Reader) Children(pid int, dst []int) ([]int, error) {
	r.path = appendProcPath(r.path[:0], r.root, pid, "task")
	fd, err := r.open(unix.O_RDONLY | unix.O_DIRECTORY)
	if err != nil {
		return dst, fmt.Errorf("procfs: open %d/task: %w", pid, err)
	}
	var tids []int
	err = r.eachDirent(fd, func(name []byte, _ uint64) {
		if v, ok := atoi(name); ok {
			tids = append(tids, int(v))
		}
	})
	unix.Close(fd)
	if err != nil {
		return dst, err
	}
	for _, tid := range tids {
		// "<root>/<pid>/task" + "/<tid>/children"
		r.path = appendProcPath(r.path[:0], r.root, pid, "task")
		r.path = appendProcPath(r.path[:len(r.path)-1], "", tid, "children")
		b, err := r.readFile(1 << 20)
		if err != nil {
			continue // thread exited meanwhile
		}
		for _, f := range bytes.Fields(b) {
			if v, ok := atoi(f); ok {
				dst = append(dst, int(v))
			}
		}
	}
	return dst, nil
}

// eachDirent calls fn with each entry name of the open directory fd.
func (r *Reader) eachDirent(fd int, fn func(name []byte, ino uint64)) error {
	for {
		n, err := unix.Getdents(fd, r.dirents)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("procfs: getdents: %w", err)
		}
		if n <= 0 {
			return nil
		}
		b := r.dirents[:n]
		for len(b) >= 19 {
			// struct linux_dirent64 { u64 ino; s64 off; u16 reclen; u8 type; char name[]; }
			reclen := int(binary.NativeEndian.Uint16(b[16:18]))
			if reclen < 19 || reclen > len(b) {
				return fmt.Errorf("procfs: bad dirent length %d", reclen)
			}
			name := b[19:reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			fn(name, binary.NativeEndian.Uint64(b[0:8]))
			b = b[reclen:]
		}
	}
}

var errESRCH = unix.ESRCH

// atFDCWD is AT_FDCWD (-100) as a system call argument.
var atFDCWD = func() uintptr { v := unix.AT_FDCWD; return uintptr(v) }()

// UIDs returns the real, effective, saved and file-system user IDs of pid
// from /proc/PID/status (readable for every process, whoever owns it).
func (r *Reader) UIDs(pid int) ([4]uint32, error) {
	var out [4]uint32
	r.path = appendProcPath(r.path[:0], r.root, pid, "status")
	b, err := r.readFile(64 << 10)
	if err != nil {
		return out, fmt.Errorf("procfs: read %d/status: %w", pid, err)
	}
	return parseStatusUIDs(b)
}
