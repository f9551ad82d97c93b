package workers

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/workerscope/workerscope/internal/sandbox"
)

// Isolation tier names, as in IsolationInfo.Tiers and docs/security.md.
const (
	TierUIDs     = "uids"     // tier 2: one uid/gid per live worker tree
	TierLandlock = "landlock" // tier 3: Landlock file system, TCP and IPC-scope rules
)

// IsolationInfo describes the worker isolation chosen at start-up and why.
type IsolationInfo struct {
	// Tiers lists the isolation tiers in force (TierUIDs, TierLandlock);
	// empty when workers run as the supervisor's uid, unconfined.
	Tiers []string `json:"tiers"`
	// UIDs is the worker uid range ("" without tier 2).
	UIDs string `json:"uids,omitempty"`
	// Sandbox is the configured mode; LandlockABI the kernel's ABI version
	// (0: none).
	Sandbox     sandbox.Mode `json:"sandbox"`
	LandlockABI int          `json:"landlock_abi"`
	// Reason says what is missing (or why a tier was not used).
	Reason string `json:"reason,omitempty"`
	// ConnectPorts and BindPorts are the TCP ports a confined worker may
	// connect to and bind.
	ConnectPorts []uint16 `json:"connect_ports,omitempty"`
	BindPorts    []uint16 `json:"bind_ports,omitempty"`
	// DirRoot holds the per-worker directories ("" when none are made).
	DirRoot string `json:"dir_root,omitempty"`
}

// isolation is the Manager's isolation state, set once by setupIsolation.
type isolation struct {
	info       IsolationInfo
	pool       *sandbox.UIDPool // nil: tier 2 off
	dirRoot    string           // "": no per-worker directories, no helper
	helperPath string
	policy     sandbox.Policy // the template; each worker adds its directory
	exhausted  atomic.Uint64
}

// workerIso is one worker's share of the isolation.
type workerIso struct {
	uid       int // -1: the supervisor's
	dir       string
	sandboxed bool
}

// Isolation reports the worker isolation tiers chosen at start-up.
func (m *Manager) Isolation() IsolationInfo {
	li := m.iso.info
	li.Tiers = slices.Clone(li.Tiers)
	return li
}

func (c *Config) isolated() bool {
	return !c.WorkerUIDs.IsZero() || (c.Sandbox != "" && c.Sandbox != sandbox.ModeOff)
}

func (c *Config) validateIsolation() []error {
	var errs []error
	if _, err := sandbox.ParseMode(string(c.Sandbox)); err != nil {
		errs = append(errs, fieldErr("Sandbox", "%w", err))
	}
	if r := c.WorkerUIDs; !r.IsZero() {
		if _, err := sandbox.ParseUIDRange(r.String()); err != nil {
			errs = append(errs, fieldErr("WorkerUIDs", "%w", err))
		}
		if uid := os.Geteuid(); uid >= 0 && (r.Contains(uint32(uid)) || r.Contains(uint32(os.Getuid()))) {
			errs = append(errs, fieldErr("WorkerUIDs", "%s includes the supervisor's own uid %d", r, uid))
		}
		if gid := os.Getegid(); gid >= 0 && (r.Contains(uint32(gid)) || r.Contains(uint32(os.Getgid()))) {
			errs = append(errs, fieldErr("WorkerUIDs", "%s includes the supervisor's own gid %d (each worker's gid is its uid)", r, gid))
		}
	}
	if !c.isolated() {
		return errs
	}
	if len(c.SandboxHelper) == 0 || c.SandboxHelper[0] == "" {
		errs = append(errs, fieldErr("SandboxHelper", "WorkerUIDs and Sandbox need SandboxHelper (a binary that runs sandbox.Main)"))
	}
	if c.Dir != "" {
		errs = append(errs, fieldErr("Dir", "cannot be combined with WorkerUIDs or Sandbox: each worker works in its own directory under WorkerDirRoot"))
	}
	for field, paths := range map[string][]string{"SandboxReadOnly": c.SandboxReadOnly, "SandboxReadWrite": c.SandboxReadWrite, "WorkerDirRoot": {c.WorkerDirRoot}} {
		for _, p := range paths {
			if p != "" && !filepath.IsAbs(p) {
				errs = append(errs, fieldErr(field, "path %q is not absolute", p))
			}
		}
	}
	for _, p := range c.DenyPorts {
		for field, allowed := range map[string][]uint16{"AllowConnectPorts": c.AllowConnectPorts, "AllowBindPorts": c.AllowBindPorts} {
			if slices.Contains(allowed, p) {
				errs = append(errs, fieldErr(field, "port %d must never be reachable from workers (the supervisor's own: DenyPorts), but it is allowed", p))
			}
		}
	}
	return errs
}

// setupIsolation checks what the configured tiers need, chooses what runs,
// and logs the choice once.
func (m *Manager) setupIsolation() error {
	c := &m.cfg
	iso := &m.iso
	iso.info = IsolationInfo{Tiers: []string{}, Sandbox: c.Sandbox, UIDs: c.WorkerUIDs.String()}
	if iso.info.Sandbox == "" {
		iso.info.Sandbox = sandbox.ModeOff
	}
	if !c.isolated() {
		m.log.Debug("worker isolation: none (workers run as the supervisor's uid)")
		return nil
	}
	var reasons []string
	helper, err := exec.LookPath(c.SandboxHelper[0])
	if err == nil {
		helper, err = filepath.Abs(helper) // workers start in their own directory
	}
	if err != nil {
		return fieldErr("SandboxHelper", "%w", err)
	}
	iso.helperPath = helper
	if !c.WorkerUIDs.IsZero() {
		ptrace, err := sandbox.CheckIdentityCaps()
		if err != nil {
			return fieldErr("WorkerUIDs", "%s: %w", c.WorkerUIDs, err)
		}
		if !ptrace {
			reasons = append(reasons, "no CAP_SYS_PTRACE: markers of other uids unreadable, trees found by cgroup and uid")
		}
		for _, p := range []string{helper, m.commandPath()} {
			if err := sandbox.OthersCanExec(p); err != nil {
				return fieldErr("WorkerUIDs", "%w", err)
			}
		}
		iso.pool = sandbox.NewUIDPool(c.WorkerUIDs)
		iso.info.Tiers = append(iso.info.Tiers, TierUIDs)
	}
	landlock := false
	if c.Sandbox == sandbox.ModeAuto || c.Sandbox == sandbox.ModeRequired {
		abi, err := sandbox.ABI()
		iso.info.LandlockABI = abi
		switch {
		case err == nil && abi >= sandbox.MinABI:
			landlock = true
		case c.Sandbox == sandbox.ModeRequired:
			if err == nil {
				err = fmt.Errorf("the kernel has Landlock ABI %d", abi)
			}
			return fmt.Errorf("workers: Sandbox=required needs Landlock ABI %d or newer (kernel 6.12+): %w", sandbox.MinABI, err)
		case err == nil && abi >= 1:
			landlock = true
			if abi < 4 {
				reasons = append(reasons, fmt.Sprintf("Landlock ABI %d: no TCP port rules (ABI 4+)", abi))
			}
			reasons = append(reasons, fmt.Sprintf("Landlock ABI %d: workers may signal processes outside their sandbox (scoping needs ABI 6+)", abi))
		default:
			reasons = append(reasons, "Landlock unavailable, workers run unconfined: "+err.Error())
		}
	}
	if landlock {
		iso.info.Tiers = append(iso.info.Tiers, TierLandlock)
		iso.info.ConnectPorts, iso.info.BindPorts = c.AllowConnectPorts, c.AllowBindPorts
	}
	iso.info.Reason = strings.Join(reasons, "; ")
	if iso.pool == nil && !landlock {
		// auto without Landlock: workers start as before (no helper, no
		// per-worker directory), said once.
		m.log.Warn("worker isolation: sandbox unavailable, workers run unconfined as the supervisor's uid",
			"sandbox", c.Sandbox, "reason", iso.info.Reason)
		return nil
	}
	root := c.WorkerDirRoot
	if root == "" {
		root = filepath.Join(os.TempDir(), fmt.Sprintf("workerscope-workers-%d", os.Geteuid()))
	}
	if err := ensureDirRoot(root); err != nil {
		return fieldErr("WorkerDirRoot", "%w", err)
	}
	if iso.pool != nil {
		if err := sandbox.OthersCanReach(root); err != nil {
			return fieldErr("WorkerDirRoot", "%s: worker uids cannot reach it: %w", root, err)
		}
	}
	iso.dirRoot, iso.info.DirRoot = root, root
	path := envValue(slices.Concat(m.baseEnv(), c.Env), "PATH")
	iso.policy = sandbox.Policy{
		Landlock: landlock,
		ReadOnly: slices.Concat(sandbox.DefaultReadOnly, sandbox.CommandTrees(c.Command[0], path),
			sandbox.CommandTrees(helper, path), c.SandboxReadOnly),
		ReadWrite:      c.SandboxReadWrite,
		ReadWriteFiles: sandbox.DefaultReadWriteFiles,
		ConnectTCP:     c.AllowConnectPorts,
		BindTCP:        c.AllowBindPorts,
		Required:       c.Sandbox == sandbox.ModeRequired,
		// Without tier 2 a root supervisor's workers would run as root:
		// the helper takes every capability away from them.
		DropCaps: iso.pool == nil && os.Geteuid() == 0,
	}
	args := []any{"tiers", strings.Join(iso.info.Tiers, ","), "sandbox", iso.info.Sandbox, "landlock_abi", iso.info.LandlockABI, "dir_root", root}
	if iso.pool != nil {
		args = append(args, "uids", c.WorkerUIDs.String())
	}
	if landlock {
		args = append(args, "connect_ports", fmt.Sprint(c.AllowConnectPorts), "bind_ports", fmt.Sprint(c.AllowBindPorts))
	}
	if iso.info.Reason != "" {
		args = append(args, "reason", iso.info.Reason)
	}
	if c.Sandbox != sandbox.ModeOff && c.Sandbox != "" && !landlock {
		m.log.Warn("worker isolation: sandbox unavailable; per-worker uids only", args...)
	} else {
		m.log.Info("worker isolation", args...)
	}
	return nil
}

// commandPath is the worker command's program as the spawn will find it.
func (m *Manager) commandPath() string {
	if p, err := exec.LookPath(m.cfg.Command[0]); err == nil {
		return p
	}
	return m.cfg.Command[0]
}

func envValue(env []string, key string) string {
	v := ""
	for _, kv := range env {
		if val, ok := strings.CutPrefix(kv, key+"="); ok {
			v = val // the last one wins, as in exec
		}
	}
	return v
}

// ensureDirRoot creates the per-worker directory root: owned by this
// process, not a symlink, mode 0711 (workers reach their own directory
// by name but cannot list the others').
func ensureDirRoot(root string) error {
	if err := os.MkdirAll(root, 0o711); err != nil {
		return err
	}
	st, err := os.Lstat(root)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", root)
	}
	if uid, ok := fileOwner(st); ok && uid != os.Geteuid() {
		return fmt.Errorf("%s is owned by uid %d, not this process's %d", root, uid, os.Geteuid())
	}
	return os.Chmod(root, 0o711)
}

// isolate gives the worker about to be spawned its uid, its directory and
// its sandbox: cmd is rewritten to start through the helper. The returned
// workerIso must be released (releaseIsolation) once the tree is gone.
func (m *Manager) isolate(id string, cmd *exec.Cmd) (*workerIso, error) {
	iso := &m.iso
	wi := &workerIso{uid: -1}
	if iso.dirRoot == "" {
		return wi, nil
	}
	uid, gid := os.Geteuid(), os.Getegid()
	if iso.pool != nil {
		u, err := iso.pool.Acquire()
		if err != nil {
			iso.exhausted.Add(1)
			return nil, err
		}
		wi.uid = int(u)
		uid, gid = int(u), int(u)
	}
	dir := filepath.Join(iso.dirRoot, id)
	tmp := filepath.Join(dir, "tmp")
	err := os.Mkdir(dir, 0o700)
	if err == nil {
		wi.dir = dir
		err = os.Mkdir(tmp, 0o700)
	}
	if err == nil && iso.pool != nil {
		err = errors.Join(os.Lchown(dir, uid, gid), os.Lchown(tmp, uid, gid))
	}
	if err != nil {
		m.releaseIsolation(wi)
		return nil, fmt.Errorf("worker directory: %w", err)
	}
	cmd.Dir = dir
	// After Config.Env: the worker's own directory is its home, always.
	cmd.Env = append(cmd.Env, "HOME="+dir, "TMPDIR="+tmp, "PWD="+dir)
	if iso.pool != nil {
		m.plat.setCredential(cmd, uid)
	}
	pol := iso.policy
	pol.ReadWrite = append([]string{dir}, iso.policy.ReadWrite...)
	args := slices.Clone(cmd.Args)
	if strings.Contains(args[0], "/") && !filepath.IsAbs(args[0]) {
		// A relative program path meant the supervisor's directory; the
		// helper runs in the worker's.
		if abs, err := filepath.Abs(args[0]); err == nil {
			args[0] = abs
		}
	}
	argv, env, err := sandbox.Wrap(m.cfg.SandboxHelper, &pol, args, cmd.Env)
	if err != nil {
		m.releaseIsolation(wi)
		return nil, err
	}
	cmd.Path, cmd.Args, cmd.Env, cmd.Err = iso.helperPath, argv, env, nil
	wi.sandboxed = pol.Landlock
	return wi, nil
}

// releaseIsolation runs once the worker's tree is gone: it kills whatever
// still runs as the worker's uid, removes the worker's directory, and
// hands the uid back — or retires it when either failed.
func (m *Manager) releaseIsolation(wi *workerIso) {
	if wi == nil {
		return
	}
	ok := true
	if wi.uid >= 0 {
		uid := uint32(wi.uid)
		killed, left := m.plat.killUIDs(func(u uint32) bool { return u == uid })
		if killed > 0 {
			m.log.Info("killed processes still running as a stopped worker's uid", "uid", uid, "count", killed)
		}
		if left > 0 {
			m.log.Error("processes survive as a stopped worker's uid; uid retired", "uid", uid, "count", left)
			ok = false
		}
	}
	if wi.dir != "" {
		if err := os.RemoveAll(wi.dir); err != nil {
			m.log.Error("cannot remove worker directory", "dir", wi.dir, "err", err)
			ok = false // its files stay owned by the uid: never hand it out again
		}
	}
	if wi.uid >= 0 {
		if ok {
			m.iso.pool.Release(uint32(wi.uid))
		} else {
			m.iso.pool.Quarantine(uint32(wi.uid))
		}
	}
}

// workerDirRE matches per-worker directory names: <instance>-<seq>.
var workerDirRE = regexp.MustCompile(`^(w[0-9a-f]{8})-[0-9]+$`)

// recoverIsolation runs after recoverLeftovers: it refuses a uid range
// that overlaps a live instance's (their lock files name their ranges),
// kills whatever runs as a uid of this instance's range (leftovers of a
// dead one: the range is this instance's alone), and removes the worker
// directories of dead instances: those recoverLeftovers found dead, and
// those owned by a uid of this range whose instance has no lock file (its
// runtime directory was wiped, e.g. by a reboot). Directories of instances
// this one cannot prove dead (another runtime directory sharing the root)
// are left alone.
func (m *Manager) recoverIsolation() error {
	iso := &m.iso
	dir := m.cfg.runtimeDir()
	if iso.dirRoot == "" || dir == "" || m.recovery.lock == nil {
		return nil
	}
	live := map[string]bool{m.id: true}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		inst, ok := strings.CutSuffix(e.Name(), ".lock")
		if !ok || inst == m.id || !instanceRE.MatchString(inst) {
			continue
		}
		live[inst] = true
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil || iso.pool == nil {
			continue
		}
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "uids "); ok {
				if r, err := sandbox.ParseUIDRange(v); err == nil && r.Overlaps(m.cfg.WorkerUIDs) {
					return fmt.Errorf("workers: WorkerUIDs %s overlaps the range %s of live supervisor instance %s (%s): each supervisor needs its own range",
						m.cfg.WorkerUIDs, r, inst, filepath.Join(dir, e.Name()))
				}
			}
		}
	}
	if iso.pool != nil {
		r := m.cfg.WorkerUIDs
		killed, left := m.plat.killUIDs(r.Contains)
		m.counts.leftoversKilled.Add(uint64(killed))
		if killed > 0 || left > 0 {
			m.log.Warn("killed leftover processes running as worker uids", "uids", r.String(), "killed", killed, "surviving", left)
		}
	}
	ents, _ = os.ReadDir(iso.dirRoot)
	for _, e := range ents {
		sm := workerDirRE.FindStringSubmatch(e.Name())
		if sm == nil || live[sm[1]] {
			continue
		}
		p := filepath.Join(iso.dirRoot, e.Name())
		dead := slices.Contains(m.recovery.instances, sm[1])
		if st, err := os.Lstat(p); !dead && err == nil && iso.pool != nil {
			uid, ok := fileOwner(st)
			dead = ok && uid >= 0 && m.cfg.WorkerUIDs.Contains(uint32(uid))
		}
		if !dead {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			m.log.Warn("cannot remove a dead instance's worker directory", "dir", p, "err", err)
		} else {
			m.log.Info("removed a dead instance's worker directory", "dir", p)
		}
	}
	return nil
}
