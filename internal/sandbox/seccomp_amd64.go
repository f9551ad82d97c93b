//go:build linux && amd64

package sandbox

import "golang.org/x/sys/unix"

// seccompABIs: x86-64 (and x32) natively, i386 through int 0x80.
var seccompABIs = []seccompABI{
	{arch: unix.AUDIT_ARCH_X86_64, socket: []uint32{unix.SYS_SOCKET, unix.SYS_SOCKET | 0x40000000}},
	{arch: unix.AUDIT_ARCH_I386, socket: []uint32{359}, socketcall: 102},
}
