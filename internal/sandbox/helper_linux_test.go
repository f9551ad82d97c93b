//go:build linux

package sandbox

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

const probeEnv = "WORKERSCOPE_SANDBOX_TEST_PROBE"

// TestMain lets the test binary be the helper (RoleEnv) and the probe the
// helper execs.
func TestMain(m *testing.M) {
	if os.Getenv(RoleEnv) != "" {
		os.Exit(Main())
	}
	if p := os.Getenv(probeEnv); p != "" {
		os.Exit(probe(p))
	}
	os.Exit(m.Run())
}

// probe runs inside the sandbox and prints what it observed.
func probe(what string) int {
	switch what {
	case "mptcp":
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, ipprotoMPTCP)
		if err == nil {
			unix.Close(fd)
		}
		fd2, err2 := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err2 == nil {
			unix.Close(fd2)
		}
		fmt.Printf("mptcp=%v tcp=%v\n", err, err2)
	case "env":
		fmt.Printf("role=%q policy=%q pid=%d nnp=%v\n", os.Getenv(RoleEnv), os.Getenv(PolicyEnv), os.Getpid(), nnp())
	case "caps":
		b, _ := os.ReadFile("/proc/self/status")
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "Cap") {
				fmt.Println(l)
			}
		}
	}
	return 0
}

func nnp() bool {
	v, err := unix.PrctlRetInt(unix.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)
	return err == nil && v == 1
}

func runHelper(t *testing.T, p *Policy, what string) string {
	t.Helper()
	argv, env, err := Wrap([]string{os.Args[0]}, p, []string{os.Args[0], "-test.run=^$"}, append(os.Environ(), probeEnv+"="+what))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	return string(out)
}

// TestHelperExecsInPlace: the helper execs the command in place (same PID
// as the one started), with no_new_privs and without its own variables.
func TestHelperExecsInPlace(t *testing.T) {
	out := runHelper(t, &Policy{}, "env")
	if !strings.Contains(out, `role="" policy=""`) || !strings.Contains(out, "nnp=true") {
		t.Fatalf("probe: %s", out)
	}
}

// TestHelperRefusesMultipathTCP: Landlock's TCP rules do not apply to
// Multipath TCP sockets, so the helper's seccomp filter refuses them
// while plain TCP sockets still work.
func TestHelperRefusesMultipathTCP(t *testing.T) {
	if abi, err := ABI(); err != nil || abi < 1 {
		if os.Getenv("WORKERSCOPE_ISOLATION") == "required" {
			t.Fatalf("no Landlock: %v", err)
		}
		t.Skip("no Landlock")
	}
	exeDir := filepath.Dir(os.Args[0])
	out := runHelper(t, &Policy{Landlock: true, ReadOnly: append([]string{exeDir}, DefaultReadOnly...)}, "mptcp")
	if !strings.Contains(out, "mptcp=protocol not supported tcp=<nil>") {
		t.Fatalf("probe: %s", out)
	}
}

// TestHelperDropsCaps: a worker started as root with DropCaps has no
// capability left.
func TestHelperDropsCaps(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	out := runHelper(t, &Policy{DropCaps: true}, "caps")
	for _, want := range []string{"CapInh:\t0000000000000000", "CapPrm:\t0000000000000000", "CapEff:\t0000000000000000", "CapBnd:\t0000000000000000", "CapAmb:\t0000000000000000"} {
		if !strings.Contains(out, want) {
			t.Errorf("probe lacks %q:\n%s", want, out)
		}
	}
}

func TestMPTCPFilterJumpsForward(t *testing.T) {
	f := mptcpFilter(seccompABIs)
	for i, ins := range f {
		if ins.Code == bpfJeqK && (i+1+int(ins.Jt) >= len(f) || i+1+int(ins.Jf) >= len(f)) {
			t.Fatalf("instruction %d jumps past the end", i)
		}
	}
	if last := f[len(f)-1]; last.Code != bpfRetK || last.K != seccompRetAllow {
		t.Fatalf("last instruction %+v", last)
	}
}
