//go:build linux

package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"syscall"

	"github.com/landlock-lsm/go-landlock/landlock"
	llsys "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

// ABI returns the Landlock ABI version of the running kernel (0 with an
// error when Landlock is missing or disabled).
func ABI() (int, error) {
	v, err := llsys.LandlockGetABIVersion()
	if err != nil {
		return 0, fmt.Errorf("sandbox: Landlock unavailable: %w", err)
	}
	return v, nil
}

// Supported reports whether this platform can run the helper at all.
func Supported() bool { return true }

// Main is the helper role: it reads the Policy from PolicyEnv, confines
// itself — capabilities dropped when asked, no_new_privs, the Landlock
// domain — and execs the worker command that follows "--" in its argv,
// with RoleEnv and PolicyEnv removed from the environment. exec keeps the
// PID, the process group, the parent-death signal and every other
// environment variable (the WORKERSCOPE_WORKER_ID marker). It returns only
// on failure, with exit code 126 (127 when the command is not found) and a
// message on stderr.
func Main() int {
	if err := run(os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "workerscope sandbox: %v\n", err)
		if errors.Is(err, exec.ErrNotFound) {
			return 127
		}
		return 126
	}
	return 0 // not reached: run execs
}

func run(args []string) error {
	i := slices.Index(args, "--")
	if i < 0 || i == len(args)-1 {
		return errors.New("usage: HELPER -- COMMAND [ARG...]")
	}
	argv := args[i+1:]
	p, err := decodePolicy(os.Getenv(PolicyEnv))
	if err != nil {
		return err
	}
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, RoleEnv+"=") || strings.HasPrefix(kv, PolicyEnv+"=")
	})
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return err
	}
	// Capabilities, no_new_privs and the Landlock domain are per thread:
	// everything happens on this one, which then execs (the new image
	// inherits this thread's credentials and domain). Never unlocked.
	runtime.LockOSThread()
	if p.DropCaps {
		if err := dropCaps(); err != nil {
			return err
		}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	if p.Landlock {
		if err := restrict(p); err != nil {
			return err
		}
		// Landlock's TCP rules do not see Multipath TCP sockets.
		if ok, err := denyMPTCP(); err != nil {
			return err
		} else if !ok && p.Required {
			return fmt.Errorf("sandbox required but Multipath TCP cannot be refused on %s", runtime.GOARCH)
		}
	}
	return syscall.Exec(path, argv, env)
}

// restrict applies p's Landlock rules to the calling thread.
func restrict(p *Policy) error {
	abi, err := ABI()
	if p.Required && (err != nil || abi < MinABI) {
		if err == nil {
			err = fmt.Errorf("kernel has Landlock ABI %d", abi)
		}
		return fmt.Errorf("sandbox required but Landlock ABI %d+ is not available: %w", MinABI, err)
	}
	var rules []landlock.Rule
	roDirs, roFiles := splitDirs(p.ReadOnly)
	rwDirs, rwFiles := splitDirs(p.ReadWrite)
	rwFiles = append(rwFiles, existing(p.ReadWriteFiles)...)
	if len(roDirs) > 0 {
		rules = append(rules, landlock.RODirs(roDirs...))
	}
	if len(roFiles) > 0 {
		rules = append(rules, landlock.ROFiles(roFiles...))
	}
	if len(rwDirs) > 0 {
		// Refer: moving files between directories of the worker's own
		// tree (git, npm and editors rename temporary files into place).
		rules = append(rules, landlock.RWDirs(rwDirs...).WithRefer())
	}
	if len(rwFiles) > 0 {
		rules = append(rules, landlock.RWFiles(rwFiles...).WithIoctlDev())
	}
	for _, port := range p.ConnectTCP {
		rules = append(rules, landlock.ConnectTCP(port))
	}
	for _, port := range p.BindTCP {
		rules = append(rules, landlock.BindTCP(port))
	}
	// V7: file system, TCP, scoped signals and abstract UNIX sockets, and
	// audit logging; downgraded on older kernels (MinABI checked above when
	// required). Upgrading the preset is a deliberate change: newer ABIs
	// restrict more (V9: pathname UNIX sockets, V10: UDP).
	fd, flags, err := landlock.V7.BestEffort().EnableLoggingForSubprocesses().NewRulesetFD(rules...)
	if err != nil {
		return fmt.Errorf("landlock ruleset: %w", err)
	}
	if fd < 0 {
		return nil // no Landlock on this kernel (auto): unconfined
	}
	defer unix.Close(fd)
	if err := llsys.LandlockRestrictSelf(fd, flags); err != nil {
		return fmt.Errorf("landlock restrict: %w", err)
	}
	return nil
}

// splitDirs splits existing paths into directories and other files;
// missing ones are dropped.
func splitDirs(paths []string) (dirs, files []string) {
	for _, p := range paths {
		st, err := os.Stat(p)
		switch {
		case err != nil:
		case st.IsDir():
			dirs = append(dirs, p)
		default:
			files = append(files, p)
		}
	}
	return dirs, files
}

func existing(paths []string) []string {
	var out []string
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// dropCaps empties the calling thread's bounding, ambient, inheritable,
// permitted and effective capability sets, so that the exec'd worker has
// no capability even as uid 0.
func dropCaps() error {
	for c := 0; c <= unix.CAP_LAST_CAP; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("clear capabilities: %w", err)
	}
	return nil
}
