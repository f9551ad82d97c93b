//go:build linux && arm64

package sandbox

import "golang.org/x/sys/unix"

// seccompABIs: AArch64, and 32-bit ARM (compat) where enabled.
var seccompABIs = []seccompABI{
	{arch: unix.AUDIT_ARCH_AARCH64, socket: []uint32{unix.SYS_SOCKET}},
	{arch: unix.AUDIT_ARCH_ARM, socket: []uint32{281}},
}
