//go:build linux

package sandbox

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ipprotoMPTCP is IPPROTO_MPTCP: Landlock's TCP rules do not cover
// Multipath TCP sockets (landlock-lsm/linux#54), and an MPTCP connect()
// reaches any port, so the helper refuses to create them.
const ipprotoMPTCP = 262

// sysSocketcallSocket is socketcall(2)'s SYS_SOCKET call number.
const sysSocketcallSocket = 1

// seccompABI describes the socket system calls of one audit architecture.
type seccompABI struct {
	arch       uint32
	socket     []uint32 // socket(2) numbers (x32's is the amd64 one | 0x40000000)
	socketcall uint32   // socketcall(2); 0: none
}

// bpf instruction codes (linux/filter.h).
const (
	bpfLdWAbs = 0x20 // BPF_LD | BPF_W | BPF_ABS
	bpfJeqK   = 0x15 // BPF_JMP | BPF_JEQ | BPF_K
	bpfRetK   = 0x06 // BPF_RET | BPF_K

	seccompRetAllow = 0x7fff0000
	seccompRetErrno = 0x00050000

	offNr   = 0
	offArch = 4
	offArg0 = 16 // low 32 bits (little-endian: every architecture below)
	offArg2 = 32
)

// mptcpFilter builds a seccomp filter that fails socket(…, IPPROTO_MPTCP)
// with EPROTONOSUPPORT, and socketcall(SYS_SOCKET, …) — whose protocol the
// filter cannot see — with ENOSYS, for every ABI in abis; everything else
// is allowed.
func mptcpFilter(abis []seccompABI) []unix.SockFilter {
	type ins struct {
		f      unix.SockFilter
		jt, jf string // labels; "" = next
		label  string
	}
	var prog []ins
	add := func(label string, f unix.SockFilter, jt, jf string) {
		prog = append(prog, ins{f: f, jt: jt, jf: jf, label: label})
	}
	add("", unix.SockFilter{Code: bpfLdWAbs, K: offArch}, "", "")
	for i, a := range abis {
		next := fmt.Sprintf("abi%d", i+1)
		add(fmt.Sprintf("abi%d", i), unix.SockFilter{Code: bpfJeqK, K: a.arch}, "", next)
		add("", unix.SockFilter{Code: bpfLdWAbs, K: offNr}, "", "")
		for _, nr := range a.socket {
			add("", unix.SockFilter{Code: bpfJeqK, K: nr}, "proto", "")
		}
		if a.socketcall != 0 {
			add("", unix.SockFilter{Code: bpfJeqK, K: a.socketcall}, "socketcall", "")
		}
		add("", unix.SockFilter{Code: bpfRetK, K: seccompRetAllow}, "", "")
	}
	add(fmt.Sprintf("abi%d", len(abis)), unix.SockFilter{Code: bpfRetK, K: seccompRetAllow}, "", "")
	add("proto", unix.SockFilter{Code: bpfLdWAbs, K: offArg2}, "", "")
	add("", unix.SockFilter{Code: bpfJeqK, K: ipprotoMPTCP}, "", "allow")
	add("", unix.SockFilter{Code: bpfRetK, K: seccompRetErrno | uint32(unix.EPROTONOSUPPORT)}, "", "")
	add("socketcall", unix.SockFilter{Code: bpfLdWAbs, K: offArg0}, "", "")
	add("", unix.SockFilter{Code: bpfJeqK, K: sysSocketcallSocket}, "", "allow")
	add("", unix.SockFilter{Code: bpfRetK, K: seccompRetErrno | uint32(unix.ENOSYS)}, "", "")
	add("allow", unix.SockFilter{Code: bpfRetK, K: seccompRetAllow}, "", "")

	at := map[string]int{}
	for i, p := range prog {
		if p.label != "" {
			at[p.label] = i
		}
	}
	out := make([]unix.SockFilter, len(prog))
	for i, p := range prog {
		f := p.f
		if f.Code == bpfJeqK {
			for _, j := range []struct {
				label string
				dst   *uint8
			}{{p.jt, &f.Jt}, {p.jf, &f.Jf}} {
				if j.label != "" {
					*j.dst = uint8(at[j.label] - i - 1) // forward only, and short
				}
			}
		}
		out[i] = f
	}
	return out
}

// denyMPTCP installs mptcpFilter for this architecture on the calling
// thread (inherited across exec). It needs no_new_privs. ok is false on
// architectures without a table (the caller reports it).
func denyMPTCP() (ok bool, err error) {
	if len(seccompABIs) == 0 {
		return false, nil
	}
	f := mptcpFilter(seccompABIs)
	prog := unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}
	if err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&prog)), 0, 0); err != nil {
		return true, fmt.Errorf("seccomp filter against Multipath TCP: %w", err)
	}
	return true, nil
}
