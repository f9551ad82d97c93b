//go:build linux && (386 || arm || mips || mipsle)

package procfs

import "golang.org/x/sys/unix"

// sysFstatat is fstatat(2) filling a unix.Stat_t: fstatat64 on 32-bit
// architectures, as x/sys/unix's own Fstatat uses there.
const sysFstatat = unix.SYS_FSTATAT64
