package sandbox

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Mode says whether workers run under a Landlock sandbox.
type Mode string

// Sandbox modes.
const (
	// ModeOff (also "") runs workers unconfined.
	ModeOff Mode = "off"
	// ModeAuto confines workers when the kernel has Landlock and runs them
	// unconfined (logged once) when it does not.
	ModeAuto Mode = "auto"
	// ModeRequired refuses to start unless the kernel has Landlock ABI
	// MinABI or newer, and makes every worker fail to start rather than
	// run unconfined.
	ModeRequired Mode = "required"
)

// MinABI is the Landlock ABI version ModeRequired needs: file system rules
// (1), TCP bind and connect rules (4) and scoped signals and abstract UNIX
// sockets (6) — every promise of docs/security.md.
const MinABI = 6

// ParseMode parses "off", "auto" or "required".
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToLower(strings.TrimSpace(s))); m {
	case ModeOff, ModeAuto, ModeRequired:
		return m, nil
	case "":
		return ModeOff, nil
	}
	return "", fmt.Errorf("invalid sandbox mode %q: want off, auto or required", s)
}

// ParsePorts parses a comma-separated list of TCP ports, e.g. "443,80";
// "" and "none" are the empty list.
func ParsePorts(s string) ([]uint16, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.EqualFold(s, "none") {
		return nil, nil
	}
	var out []uint16
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		n, err := strconv.ParseUint(f, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("invalid port %q in %q: want comma-separated ports 1-65535", f, s)
		}
		if !slices.Contains(out, uint16(n)) {
			out = append(out, uint16(n))
		}
	}
	return out, nil
}

// Policy is what a sandboxed worker tree may do. Paths must be absolute.
type Policy struct {
	// ReadOnly trees may be read, listed and executed.
	ReadOnly []string `json:"ro,omitempty"`
	// ReadWrite trees may also be written, created in and removed from.
	ReadWrite []string `json:"rw,omitempty"`
	// ReadWriteFiles are single files (devices such as /dev/null) that may
	// be opened for reading and writing.
	ReadWriteFiles []string `json:"rw_files,omitempty"`
	// ConnectTCP and BindTCP are the TCP ports the tree may connect to and
	// bind (Landlock ABI 4+); every other port is refused.
	ConnectTCP []uint16 `json:"connect_tcp,omitempty"`
	BindTCP    []uint16 `json:"bind_tcp,omitempty"`
	// Required makes the helper fail (exit 126) instead of running the
	// worker when Landlock ABI MinABI is not available.
	Required bool `json:"required,omitempty"`
	// Landlock applies the Landlock rules; without it the helper only sets
	// no_new_privs (and drops capabilities when asked) before the exec.
	Landlock bool `json:"landlock,omitempty"`
	// DropCaps clears the capability sets (bounding, inheritable, ambient)
	// before exec, so a worker running as uid 0 has no capabilities.
	DropCaps bool `json:"drop_caps,omitempty"`
}

// DefaultReadOnly are the system trees every sandboxed worker may read and
// execute (those missing on a host are skipped): programs, libraries,
// configuration, /proc (a process can only read its own domain's
// processes' private files: Landlock's ptrace rule), and the resolver's
// files behind /etc/resolv.conf.
var DefaultReadOnly = []string{
	"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt",
	"/proc", "/sys/fs/cgroup", "/run/systemd/resolve", "/dev/urandom", "/dev/random",
}

// DefaultReadWriteFiles are the device files every sandboxed worker may
// write (`cmd > /dev/null` is everywhere in shell scripts).
var DefaultReadWriteFiles = []string{"/dev/null", "/dev/zero", "/dev/full", "/dev/tty"}

// CommandTrees returns the trees a worker command needs to read and
// execute beyond DefaultReadOnly: the directory of argv0 (as found on
// path) and of its symlink target, the topmost node_modules directory
// above either (an npm-installed CLI such as pi loads its dependencies
// from there), and for a "#!" script the interpreter's installation
// (e.g. /opt/node for /opt/node/bin/node, found on path for
// "#!/usr/bin/env node").
func CommandTrees(argv0, path string) []string {
	var out []string
	add := func(p string) {
		if p != "" && filepath.IsAbs(p) && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	exe := lookPath(argv0, path)
	if exe == "" {
		return nil
	}
	real, err := filepath.EvalSymlinks(exe)
	if err != nil {
		real = exe
	}
	for _, p := range []string{exe, real} {
		add(filepath.Dir(p))
		if nm := topNodeModules(p); nm != "" {
			add(nm)
		}
	}
	if interp := shebang(real); interp != "" {
		ip := lookPath(interp, path)
		if r, err := filepath.EvalSymlinks(ip); err == nil {
			ip = r
		}
		if ip != "" {
			dir := filepath.Dir(ip)
			if filepath.Base(dir) == "bin" {
				dir = filepath.Dir(dir) // the installation prefix: bin/node, lib/node_modules
			}
			add(dir)
		}
	}
	return out
}

// lookPath finds name as exec.LookPath would with the given PATH.
func lookPath(name, path string) string {
	if strings.Contains(name, "/") {
		p, err := filepath.Abs(name)
		if err != nil {
			return ""
		}
		return p
	}
	for dir := range strings.SplitSeq(path, string(os.PathListSeparator)) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

func topNodeModules(p string) string {
	i := strings.Index(p, "/node_modules/")
	if i < 0 {
		return ""
	}
	return p[:i+len("/node_modules")]
}

// shebang returns the interpreter a "#!" script asks for ("env X" → X).
func shebang(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	buf := make([]byte, 256)
	n, _ := f.Read(buf)
	line, ok := strings.CutPrefix(string(buf[:n]), "#!")
	if !ok {
		return ""
	}
	line, _, _ = strings.Cut(line, "\n")
	f2 := strings.Fields(line)
	if len(f2) == 0 {
		return ""
	}
	if filepath.Base(f2[0]) == "env" {
		for _, a := range f2[1:] {
			if !strings.HasPrefix(a, "-") {
				return a
			}
		}
		return ""
	}
	return f2[0]
}

// OthersCanExec checks that a process of another, unprivileged uid (a tier-2
// worker) can execute path: every directory above it searchable by
// "others", the file executable and, for scripts, readable by them. The
// error names the first component in the way.
func OthersCanExec(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for _, p := range []string{abs, real} {
		if err := OthersCanReach(filepath.Dir(p)); err != nil {
			return fmt.Errorf("worker uids cannot reach %s: %w", path, err)
		}
	}
	st, err := os.Stat(real)
	if err != nil {
		return err
	}
	need := os.FileMode(0o001)
	if shebang(real) != "" {
		need |= 0o004
	}
	if st.Mode().Perm()&need != need {
		return fmt.Errorf("worker uids cannot run %s: mode %04o (needs o+x, and o+r for a script)", real, st.Mode().Perm())
	}
	return nil
}

// OthersCanReach checks that a process of another, unprivileged uid can
// enter dir: it and every directory above it are searchable by "others".
func OthersCanReach(dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for ; ; dir = filepath.Dir(dir) {
		st, err := os.Stat(dir)
		if err != nil {
			return err
		}
		if st.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("directory %s is mode %04o (needs o+x)", dir, st.Mode().Perm())
		}
		if dir == "/" {
			return nil
		}
	}
}

// encode and decode carry a Policy to the helper in PolicyEnv.
func (p *Policy) encode() (string, error) {
	b, err := json.Marshal(p)
	return string(b), err
}

func decodePolicy(s string) (*Policy, error) {
	var p Policy
	if err := json.Unmarshal([]byte(s), &p); err != nil {
		return nil, fmt.Errorf("sandbox: bad policy in %s: %w", PolicyEnv, err)
	}
	return &p, nil
}

// RoleEnv, when set in a process's environment, makes Main the program:
// the helper that sandboxes itself and execs the worker. PolicyEnv carries
// the Policy as JSON. The helper removes both before the exec.
const (
	RoleEnv   = "WORKERSCOPE_SANDBOX_EXEC"
	PolicyEnv = "WORKERSCOPE_SANDBOX_POLICY"
)

// Wrap returns the argv and environment that run argv under p: helper is
// the argv that starts this program's binary (Main must run when RoleEnv is
// set), env the worker's environment.
func Wrap(helper []string, p *Policy, argv, env []string) ([]string, []string, error) {
	if len(helper) == 0 || len(argv) == 0 {
		return nil, nil, fmt.Errorf("sandbox: empty helper or worker command")
	}
	enc, err := p.encode()
	if err != nil {
		return nil, nil, fmt.Errorf("sandbox: encode policy: %w", err)
	}
	out := append(slices.Clone(helper), "--")
	out = append(out, argv...)
	env = append(slices.Clone(env), RoleEnv+"=1", PolicyEnv+"="+enc)
	return out, env, nil
}
