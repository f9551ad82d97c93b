package workers

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// recovery is this instance's lock in RuntimeDir (nil: none) and the dead
// instances recoverLeftovers cleaned up (their worker directories go too,
// recoverIsolation).
type recovery struct {
	lock      *os.File
	instances []string
}

// instanceRE matches Manager IDs (see New), which name lock files.
var instanceRE = regexp.MustCompile(`^w[0-9a-f]{8}$`)

// runtimeDir returns the directory for instance lock files ("" = none).
func (c *Config) runtimeDir() string {
	switch {
	case c.RuntimeDir == "-":
		return ""
	case c.RuntimeDir != "":
		return c.RuntimeDir
	case os.Getenv("XDG_RUNTIME_DIR") != "":
		return filepath.Join(os.Getenv("XDG_RUNTIME_DIR"), "workerscope")
	}
	if os.Geteuid() == 0 {
		if st, err := os.Stat("/run"); err == nil && st.IsDir() {
			return "/run/workerscope"
		}
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("workerscope-%d", os.Geteuid()))
}

// recoverLeftovers takes this instance's lock in the runtime directory,
// then stops what is left of instances that died without Close: those
// whose lock file nobody holds (flock locks die with their process). Live
// instances hold their lock, so their processes are never touched, and
// processes of supervisors without a lock file (other versions, other
// runtime directories) are left alone.
func (m *Manager) recoverLeftovers() {
	dir := m.cfg.runtimeDir()
	if dir == "" {
		return
	}
	if err := m.takeRunLock(dir); err != nil {
		m.log.Warn("leftover recovery disabled: cannot create instance lock", "dir", dir, "err", err)
		return
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		m.log.Warn("leftover recovery: cannot list runtime directory", "dir", dir, "err", err)
		return
	}
	for _, e := range ents {
		inst, ok := strings.CutSuffix(e.Name(), ".lock")
		if !ok || inst == m.id || !instanceRE.MatchString(inst) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			continue
		}
		if err := tryLock(f); err != nil {
			_ = f.Close() // held: that instance is alive
			continue
		}
		killed, groups := m.plat.recoverInstance(inst)
		m.recovery.instances = append(m.recovery.instances, inst)
		m.counts.leftoversKilled.Add(uint64(len(killed)))
		if len(killed) > 0 || groups > 0 {
			m.log.Warn("stopped leftovers of a dead supervisor instance", "instance", inst, "processes", len(killed), "pids", killed, "cgroups_removed", groups)
		} else {
			m.log.Info("removed the lock of a dead supervisor instance; nothing was left", "instance", inst)
		}
		_ = os.Remove(path)
		_ = f.Close()
	}
}

// takeRunLock creates dir/<instance>.lock, locked, atomically: it is
// locked under a temporary name and renamed, so no other instance can see
// it unlocked.
func (m *Manager) takeRunLock(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp := filepath.Join(dir, m.id+".tmp")
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := tryLock(f); err != nil {
		_ = f.Close()
		_ = os.Remove(tmp)
		return err
	}
	_, _ = fmt.Fprintf(f, "%d\n", os.Getpid())
	if !m.cfg.WorkerUIDs.IsZero() {
		// Read by later instances: uid ranges must not overlap (recoverIsolation).
		_, _ = fmt.Fprintf(f, "uids %s\n", m.cfg.WorkerUIDs)
	}
	if err := os.Rename(tmp, filepath.Join(dir, m.id+".lock")); err != nil {
		_ = f.Close()
		_ = os.Remove(tmp)
		return err
	}
	m.recovery.lock = f
	return nil
}

func (m *Manager) releaseRunLock() {
	if m.recovery.lock == nil {
		return
	}
	err := os.Remove(m.recovery.lock.Name()[:len(m.recovery.lock.Name())-len(".tmp")] + ".lock")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		m.log.Warn("cannot remove instance lock", "err", err)
	}
	_ = m.recovery.lock.Close()
	m.recovery.lock = nil
}
