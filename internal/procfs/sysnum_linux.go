//go:build linux && !386 && !arm && !mips && !mipsle

package procfs

import "golang.org/x/sys/unix"

// sysFstatat is fstatat(2) filling a unix.Stat_t.
const sysFstatat = unix.SYS_NEWFSTATAT
