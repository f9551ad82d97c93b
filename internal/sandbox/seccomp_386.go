//go:build linux && 386

package sandbox

import "golang.org/x/sys/unix"

// seccompABIs: i386, with socket(2) and socketcall(2).
var seccompABIs = []seccompABI{
	{arch: unix.AUDIT_ARCH_I386, socket: []uint32{359}, socketcall: 102},
}
