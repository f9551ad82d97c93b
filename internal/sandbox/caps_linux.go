//go:build linux

package sandbox

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// capability names, for messages.
var capNames = map[int]string{
	unix.CAP_CHOWN: "CAP_CHOWN", unix.CAP_DAC_OVERRIDE: "CAP_DAC_OVERRIDE", unix.CAP_FOWNER: "CAP_FOWNER",
	unix.CAP_KILL: "CAP_KILL", unix.CAP_SETGID: "CAP_SETGID", unix.CAP_SETUID: "CAP_SETUID",
	unix.CAP_SYS_PTRACE: "CAP_SYS_PTRACE",
}

// IdentityCaps are the capabilities a supervisor needs to run workers as
// other uids: switch to them (SETUID, SETGID), give each its directory
// (CHOWN), signal their trees (KILL), and remove what they wrote
// (DAC_OVERRIDE, FOWNER).
var IdentityCaps = []int{unix.CAP_SETUID, unix.CAP_SETGID, unix.CAP_CHOWN, unix.CAP_KILL, unix.CAP_DAC_OVERRIDE, unix.CAP_FOWNER}

// CheckIdentityCaps returns an error naming the IdentityCaps this process
// lacks in its effective set, and separately whether it has
// CAP_SYS_PTRACE (without it the WORKERSCOPE_WORKER_ID marker of another
// uid's process cannot be read: trees are then found by cgroup and uid).
func CheckIdentityCaps() (ptrace bool, err error) {
	eff, err := effectiveCaps()
	if err != nil {
		return false, err
	}
	var missing []string
	for _, c := range IdentityCaps {
		if eff&(1<<c) == 0 {
			missing = append(missing, capNames[c])
		}
	}
	if len(missing) > 0 {
		return false, fmt.Errorf("running workers as their own uids needs root or the capabilities %s; this process (uid %d) lacks %s",
			capList(IdentityCaps), os.Geteuid(), strings.Join(missing, ", "))
	}
	return eff&(1<<unix.CAP_SYS_PTRACE) != 0, nil
}

func capList(cs []int) string {
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = capNames[c]
	}
	return strings.Join(names, ", ")
}

func effectiveCaps() (uint64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("sandbox: read capabilities: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return 0, fmt.Errorf("sandbox: parse CapEff %q: %w", v, err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("sandbox: no CapEff in /proc/self/status")
}
