//go:build unix

package demoworker

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func threadCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}

// setsid is the SysProcAttr that starts a child in a new session.
func setsid() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }

// escape starts `sleep` for ms milliseconds through a shell that exits at
// once, with an empty environment and in a new session, and returns the
// sleeper's pid (the shell prints it).
func escape(ms int) (int, error) {
	secs := strconv.FormatFloat(float64(max(ms, 1))/1000, 'f', 3, 64)
	out, err := exec.Command("/bin/sh", "-c", `env -i setsid sleep "$1" </dev/null >/dev/null 2>&1 & echo $!`, "sh", secs).Output()
	if err != nil {
		return 0, fmt.Errorf("escape: %w", err)
	}
	return strconv.Atoi(strings.TrimSpace(string(out)))
}
