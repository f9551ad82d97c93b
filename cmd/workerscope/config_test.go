package main

import (
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/workerscope/workerscope/internal/sandbox"
	"github.com/workerscope/workerscope/internal/testutil"
	"github.com/workerscope/workerscope/workers"
)

func TestParseConfigDefaults(t *testing.T) {
	t.Parallel()
	c, err := parseConfig(nil, testutil.Env(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:7070" || !c.DemoWorker || !c.DemoLoad || c.Worker.IdleTTL != 10*time.Minute ||
		c.Worker.MaxWorkers != 64 || c.Worker.StopGrace != 5*time.Second || c.TokenSource != "generated" || len(c.Token) < 16 {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestParseConfigPrecedence(t *testing.T) {
	t.Parallel()
	env := testutil.Env("WORKERSCOPE_IDLE_TTL", "1m", "WORKERSCOPE_MAX_WORKERS", "9", "WORKERSCOPE_TOKEN", "0123456789abcdef-env",
		"WORKERSCOPE_WORKER_CMD", `pi --mode rpc --append-system-prompt "be brief"`)
	c, err := parseConfig([]string{"--idle-ttl", "2m"}, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Worker.IdleTTL != 2*time.Minute {
		t.Errorf("flag should win over env: %s", c.Worker.IdleTTL)
	}
	if c.Worker.MaxWorkers != 9 {
		t.Errorf("env should win over default: %d", c.Worker.MaxWorkers)
	}
	if want := []string{"pi", "--mode", "rpc", "--append-system-prompt", "be brief"}; !reflect.DeepEqual(c.Worker.Command, want) {
		t.Errorf("worker cmd %q", c.Worker.Command)
	}
	if c.DemoWorker || c.DemoLoad {
		t.Error("demo load must default off with a real worker")
	}
	if c.TokenSource != "WORKERSCOPE_TOKEN" {
		t.Errorf("token source %s", c.TokenSource)
	}
}

func TestParseConfigErrorsNameTheSetting(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	tests := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"bad duration", []string{"--idle-ttl", "soon"}, nil, "--idle-ttl / WORKERSCOPE_IDLE_TTL"},
		{"negative grace env", nil, []string{"WORKERSCOPE_STOP_GRACE", "-1s"}, "--stop-grace / WORKERSCOPE_STOP_GRACE"},
		{"zero workers", []string{"--max-workers", "0"}, nil, "--max-workers"},
		{"tiny subscriber buffer", []string{"--subscriber-buffer-bytes", "12"}, nil, `--subscriber-buffer-bytes / WORKERSCOPE_SUBSCRIBER_BUFFER_BYTES "12": must be ≥ 1024`},
		{"short lines", []string{"--max-line-bytes", "100"}, nil, `--max-line-bytes / WORKERSCOPE_MAX_LINE_BYTES "100": must be ≥ 1024`},
		{"bad listen", []string{"--listen", "nonsense"}, nil, "--listen"},
		{"public without token", []string{"--listen", "0.0.0.0:7070"}, nil, "not a loopback address"},
		{"all interfaces without token", []string{"--listen", ":7070"}, nil, "not a loopback address"},
		{"unterminated quote", []string{"--worker-cmd", `pi "--mode`}, nil, "--worker-cmd"},
		{"bad demo-load", []string{"--demo-load", "maybe"}, nil, "--demo-load"},
		{"bad log level", []string{"--log-level", "loud"}, nil, "--log-level"},
		{"missing token file", []string{"--token-file", filepath.Join(dir, "nope")}, nil, "--token-file"},
		{"empty token file", []string{"--token-file", empty}, nil, "the file is empty"},
		{"short token", nil, []string{"WORKERSCOPE_TOKEN", "short"}, "at least 16"},
		{"stray argument", []string{"extra"}, nil, "unexpected argument"},
		{"empty program", []string{"--worker-cmd", "'' --mode rpc"}, nil, "the program name is empty"},
		{"bad memory size", []string{"--worker-memory-max", "1.5.3GiB"}, nil, "--worker-memory-max / WORKERSCOPE_WORKER_MEMORY_MAX"},
		{"unknown memory unit", nil, []string{"WORKERSCOPE_WORKER_MEMORY_MAX", "2 lightyears"}, "--worker-memory-max"},
		{"tiny memory", []string{"--worker-memory-max", "100"}, nil, `--worker-memory-max / WORKERSCOPE_WORKER_MEMORY_MAX "100": must be 0 or ≥ 1MiB`},
		{"negative pids", []string{"--worker-pids-max", "-5"}, nil, "--worker-pids-max"},
		{"cpu not a number", []string{"--worker-cpu-max", "half"}, nil, "--worker-cpu-max"},
		{"bad cgroups mode", []string{"--cgroups", "sometimes"}, nil, "--cgroups / WORKERSCOPE_CGROUPS"},
		{"uid range malformed", []string{"--worker-uids", "200000"}, nil, "--worker-uids / WORKERSCOPE_WORKER_UIDS"},
		{"uid range reversed", nil, []string{"WORKERSCOPE_WORKER_UIDS", "300-200"}, "reversed"},
		{"uid range too large", []string{"--worker-uids", "100000-900000"}, nil, "more than"},
		{"uid range with root", []string{"--worker-uids", "0-100"}, nil, "uid 0"},
		{"bad sandbox mode", []string{"--worker-sandbox", "strict"}, nil, "--worker-sandbox / WORKERSCOPE_WORKER_SANDBOX"},
		{"bad port", []string{"--worker-allow-ports", "443,https"}, nil, "--worker-allow-ports"},
		{"API port allowed", []string{"--listen", "127.0.0.1:8443", "--worker-allow-ports", "443,8443"}, nil, `--worker-allow-ports / WORKERSCOPE_WORKER_ALLOW_PORTS "443,8443": port 8443 must never be reachable`},
		{"API port bindable", []string{"--listen", "127.0.0.1:7070", "--worker-allow-bind-ports", "7070"}, nil, `--worker-allow-bind-ports / WORKERSCOPE_WORKER_ALLOW_BIND_PORTS "7070": port 7070 must never be reachable`},
		{"relative sandbox path", []string{"--worker-sandbox-ro", "/opt/x,relative"}, nil, "--worker-sandbox-ro"},
		{"relative dir root", []string{"--worker-dir-root", "workers"}, nil, "--worker-dir-root"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig(tt.args, testutil.Env(tt.env...), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestParseConfigLimits(t *testing.T) {
	t.Parallel()
	c, err := parseConfig([]string{"--worker-memory-max", "512MiB", "--worker-cpu-max", "0.5", "--cgroups", "off"},
		testutil.Env("WORKERSCOPE_WORKER_PIDS_MAX", "40"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Worker.MemoryMax != 512<<20 || c.Worker.PidsMax != 40 || c.Worker.CPUMax != 0.5 || c.Worker.Cgroups != workers.CgroupsOff {
		t.Fatalf("limits %d %d %v %q", c.Worker.MemoryMax, c.Worker.PidsMax, c.Worker.CPUMax, c.Worker.Cgroups)
	}
	c, err = parseConfig(nil, testutil.Env(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Worker.MemoryMax != 0 || c.Worker.PidsMax != 0 || c.Worker.CPUMax != 0 || c.Worker.Cgroups != workers.CgroupsAuto {
		t.Fatalf("default limits %d %d %v %q", c.Worker.MemoryMax, c.Worker.PidsMax, c.Worker.CPUMax, c.Worker.Cgroups)
	}
}

func TestParseConfigIsolation(t *testing.T) {
	t.Parallel()
	c, err := parseConfig(nil, testutil.Env(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Worker.WorkerUIDs.IsZero() || c.Worker.Sandbox != sandbox.ModeAuto || !reflect.DeepEqual(c.Worker.AllowConnectPorts, []uint16{443, 80}) ||
		c.Worker.AllowBindPorts != nil || c.Worker.WorkerDirRoot != "" {
		t.Fatalf("isolation defaults: %+v", c)
	}
	c, err = parseConfig([]string{"--worker-uids", "200000-200999", "--worker-sandbox", "required",
		"--worker-sandbox-ro", "/opt/tools, /srv/ro", "--worker-allow-ports", "none", "--worker-dir-root", "/var/lib/workerscope/workers/"},
		testutil.Env("WORKERSCOPE_WORKER_SANDBOX_RW", "/srv/shared", "WORKERSCOPE_WORKER_ALLOW_BIND_PORTS", "3000"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Worker.WorkerUIDs != (sandbox.UIDRange{First: 200000, Last: 200999}) || c.Worker.Sandbox != sandbox.ModeRequired ||
		!reflect.DeepEqual(c.Worker.SandboxReadOnly, []string{"/opt/tools", "/srv/ro"}) || !reflect.DeepEqual(c.Worker.SandboxReadWrite, []string{"/srv/shared"}) ||
		c.Worker.AllowConnectPorts != nil || !reflect.DeepEqual(c.Worker.AllowBindPorts, []uint16{3000}) || c.Worker.WorkerDirRoot != "/var/lib/workerscope/workers" {
		t.Fatalf("isolation settings: %+v", c)
	}
}

func TestPublicListenWithToken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f := filepath.Join(dir, "tok")
	os.WriteFile(f, []byte("a-long-enough-token-123\n"), 0o600)
	c, err := parseConfig([]string{"--listen", "0.0.0.0:0", "--token-file", f}, testutil.Env(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Token != "a-long-enough-token-123" || c.TokenSource != "--token-file" {
		t.Fatalf("%+v", c)
	}
	// The flag on the command line beats the environment's token.
	c, err = parseConfig([]string{"--token-file", f}, testutil.Env("WORKERSCOPE_TOKEN", "env-token-0123456789"), io.Discard)
	if err != nil || c.TokenSource != "--token-file" {
		t.Fatalf("flag vs env: %+v %v", c, err)
	}
	// Without the flag, WORKERSCOPE_TOKEN beats WORKERSCOPE_TOKEN_FILE.
	c, err = parseConfig(nil, testutil.Env("WORKERSCOPE_TOKEN", "env-token-0123456789", "WORKERSCOPE_TOKEN_FILE", f), io.Discard)
	if err != nil || c.TokenSource != "WORKERSCOPE_TOKEN" {
		t.Fatalf("env vs env file: %+v %v", c, err)
	}
}

func TestSplitCommand(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want []string
	}{
		{"pi --mode rpc", []string{"pi", "--mode", "rpc"}},
		{`  a   'b c'  "d \"e\""  f\ g `, []string{"a", "b c", `d "e"`, "f g"}},
		{`x ''`, []string{"x", ""}},
		{`'it''s'`, []string{"its"}},
	}
	for _, tt := range tests {
		got, err := splitCommand(tt.in)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("splitCommand(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "   ", `a "b`, `a\`} {
		if _, err := splitCommand(bad); err == nil {
			t.Errorf("splitCommand(%q) accepted", bad)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{
		"127.0.0.1:1": true, "localhost:1": true, "[::1]:1": true, "127.1.2.3:1": true,
		"0.0.0.0:1": false, ":1": false, "10.0.0.1:1": false, "[::]:1": false, "example.com:1": false,
	} {
		if got := isLoopback(addr); got != want {
			t.Errorf("isLoopback(%q) = %v", addr, got)
		}
	}
}

func TestVersionFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}, {"-v"}, {"serve", "--version"}} {
		var out, errOut strings.Builder
		if code := run(args, testutil.Env(), &out, &errOut); code != 0 || strings.TrimSpace(out.String()) != buildVersion() {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, out.String(), errOut.String())
		}
	}
}

// TestParseConfigHostileLoadSettings: the connection cap and subscriber
// byte budgets (issue 13) parse, default and refuse bad values.
func TestParseConfigHostileLoadSettings(t *testing.T) {
	t.Parallel()
	c, err := parseConfig(nil, testutil.Env(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxConns != 0 || c.Worker.SubscriberBufferBytes != workers.DefaultSubscriberBufferBytes || c.Worker.SubscriberBytesBudget != workers.DefaultSubscriberBytesBudget {
		t.Fatalf("defaults: max conns %d, buffer %d, budget %d", c.MaxConns, c.Worker.SubscriberBufferBytes, c.Worker.SubscriberBytesBudget)
	}
	if n := maxConns(c); n < 16 || n > 4096 {
		t.Errorf("derived max conns %d", n)
	}
	c, err = parseConfig([]string{"--max-conns", "500", "--subscriber-buffer-bytes", "4MiB"},
		testutil.Env("WORKERSCOPE_SUBSCRIBER_BUDGET_BYTES", "64MiB", "WORKERSCOPE_MAX_CONNS", "9"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxConns != 500 || maxConns(c) != 500 || c.Worker.SubscriberBufferBytes != 4<<20 || c.Worker.SubscriberBytesBudget != 64<<20 {
		t.Fatalf("set: %d %d %d", c.MaxConns, c.Worker.SubscriberBufferBytes, c.Worker.SubscriberBytesBudget)
	}
	for _, args := range [][]string{{"--max-conns", "3"}, {"--max-conns", "lots"}, {"--subscriber-buffer-bytes", "12"}, {"--subscriber-budget-bytes", "x"}} {
		if _, err := parseConfig(args, testutil.Env(), io.Discard); err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%q: err %v, want one naming %s", args, err, args[0])
		}
	}
}

// TestCredentials: secrets from systemd's $CREDENTIALS_DIRECTORY. The
// token's order is --token-file, WORKERSCOPE_TOKEN, WORKERSCOPE_TOKEN_FILE,
// the credential; the OTLP headers and Pyroscope password credentials
// stand in for their variables unless those are set; an empty flag and a
// credential that cannot be read are handled as documented.
func TestCredentials(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, v string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("token", "credential-token-0123456789\n")
	write("otlp-headers", "x-honeycomb-team=abc\n")
	write("pyroscope-password", "pw\n")
	file := write("other-token", "file-token-0123456789abcdef")
	tests := []struct {
		name       string
		args       []string
		env        []string
		wantToken  string
		wantSource string
		wantEnv    map[string]string
	}{
		{"credential only", nil, []string{"CREDENTIALS_DIRECTORY", dir}, "credential-token-0123456789", "the systemd credential token",
			map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "x-honeycomb-team=abc", "PYROSCOPE_BASIC_AUTH_PASSWORD": "pw"}},
		{"variable wins", nil, []string{"CREDENTIALS_DIRECTORY", dir, "WORKERSCOPE_TOKEN", "env-token-0123456789abc", "OTEL_EXPORTER_OTLP_HEADERS", "a=b"},
			"env-token-0123456789abc", "WORKERSCOPE_TOKEN", map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "a=b"}},
		{"token file variable wins", nil, []string{"CREDENTIALS_DIRECTORY", dir, "WORKERSCOPE_TOKEN_FILE", file},
			"file-token-0123456789abcdef", "--token-file", nil},
		{"flag wins", []string{"--token-file", file}, []string{"CREDENTIALS_DIRECTORY", dir, "WORKERSCOPE_TOKEN", "env-token-0123456789abc"},
			"file-token-0123456789abcdef", "--token-file", nil},
		{"empty flag: generated", []string{"--token-file", ""}, []string{"CREDENTIALS_DIRECTORY", dir}, "", "generated", nil},
		{"no directory", nil, nil, "", "generated", map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig(tt.args, testutil.Env(tt.env...), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if c.TokenSource != tt.wantSource || (tt.wantToken != "" && c.Token != tt.wantToken) {
				t.Errorf("token %q from %q, want %q from %q", c.Token, c.TokenSource, tt.wantToken, tt.wantSource)
			}
			for k, want := range tt.wantEnv {
				if got := c.Getenv(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}
	t.Run("unreadable credential", func(t *testing.T) {
		bad := t.TempDir()
		if err := os.Mkdir(filepath.Join(bad, "otlp-headers"), 0o700); err != nil { // a directory: read fails
			t.Fatal(err)
		}
		_, err := parseConfig(nil, testutil.Env("CREDENTIALS_DIRECTORY", bad), io.Discard)
		if err == nil || !strings.Contains(err.Error(), "credential otlp-headers") {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestWorkersDoNotInheritSecrets: the environment workers get drops the
// supervisor's settings, its token, the credentials directory and the
// telemetry settings, and keeps the demo worker's own switches.
func TestWorkersDoNotInheritSecrets(t *testing.T) {
	t.Parallel()
	drop := workerEnvDrop()
	dropped := func(name string) bool {
		for _, p := range drop {
			if strings.HasPrefix(name, p) {
				return true
			}
		}
		return false
	}
	for _, name := range []string{"WORKERSCOPE_TOKEN", "WORKERSCOPE_TOKEN_FILE", "WORKERSCOPE_LISTEN", "WORKERSCOPE_DEMO_LOAD",
		"CREDENTIALS_DIRECTORY", "OTEL_EXPORTER_OTLP_HEADERS", "PYROSCOPE_BASIC_AUTH_PASSWORD"} {
		if !dropped(name) {
			t.Errorf("workers inherit %s", name)
		}
	}
	for _, name := range []string{"WORKERSCOPE_DEMO_CRASH_AT_START", "WORKERSCOPE_DEMO_IGNORE_SIGTERM", "HOME", "PATH"} {
		if dropped(name) {
			t.Errorf("workers lose %s", name)
		}
	}
}

// TestBareBooleanFlags: a setting that takes true or false can be
// given bare, like Go's boolean flags; an explicit value still works.
func TestBareBooleanFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args  []string
		check func(*config) bool
	}{
		{[]string{"--log-otlp"}, func(c *config) bool { return c.LogOTLP }},
		{[]string{"--log-otlp=false"}, func(c *config) bool { return !c.LogOTLP }},
		{[]string{"--demo-load=true", "--worker-cmd", "sh"}, func(c *config) bool { return c.DemoLoad }},
		{[]string{"--command-cost=false"}, func(c *config) bool { return c.Worker.DisableCommandCost }},
		{[]string{"--metrics-worker-key"}, func(c *config) bool { return !c.DropWorkerKey }},
	}
	for _, tt := range tests {
		c, err := parseConfig(tt.args, testutil.Env(), io.Discard)
		if err != nil || !tt.check(c) {
			t.Errorf("%q: %+v %v", tt.args, c, err)
		}
	}
}

// TestZeroMeansNever: a 0 on the command line that the docs call "never"
// or "none" reaches workers.Config as the named value, not as the zero
// that would mean workers' default.
func TestZeroMeansNever(t *testing.T) {
	t.Parallel()
	c, err := parseConfig([]string{"--idle-ttl", "0", "--stop-grace", "0s", "--max-run-duration", "0", "--drain", "0"}, testutil.Env(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Worker.IdleTTL != workers.Never || c.Worker.StopGrace != workers.Never || c.Worker.MaxRunDuration != workers.Never || c.Drain != 0 {
		t.Fatalf("idle %v grace %v run %v drain %v", c.Worker.IdleTTL, c.Worker.StopGrace, c.Worker.MaxRunDuration, c.Drain)
	}
	c, err = parseConfig([]string{"--run-commands", ""}, testutil.Env(), io.Discard)
	if err != nil || c.Worker.RunCommands == nil || len(c.Worker.RunCommands) != 0 {
		t.Fatalf("an empty --run-commands must mean none, not the default: %q %v", c.Worker.RunCommands, err)
	}
}

// TestErrorsJoined: every invalid setting is reported at once, each
// naming its flag and variable.
func TestErrorsJoined(t *testing.T) {
	t.Parallel()
	_, err := parseConfig([]string{"--idle-ttl", "soon", "--max-workers", "0", "--log-format", "xml"}, testutil.Env("WORKERSCOPE_CGROUPS", "maybe"), io.Discard)
	for _, want := range []string{"--idle-ttl / WORKERSCOPE_IDLE_TTL", "--max-workers / WORKERSCOPE_MAX_WORKERS", "--log-format / WORKERSCOPE_LOG_FORMAT", "--cgroups / WORKERSCOPE_CGROUPS"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to name %s", err, want)
		}
	}
}
