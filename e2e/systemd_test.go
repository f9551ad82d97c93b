//go:build linux

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	unitPath   = "deploy/systemd/workerscope.service"
	envExample = "deploy/systemd/workerscope.env.example"
)

// unit is a parsed unit file: section → key → values in order, with
// systemd's rules (comments, continuation lines, an empty assignment
// resetting a list).
type unit map[string]map[string][]string

func parseUnit(t testing.TB, text string) unit {
	t.Helper()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		for strings.HasSuffix(line, `\`) && sc.Scan() {
			line = strings.TrimSuffix(line, `\`) + " " + strings.TrimSpace(sc.Text())
		}
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("unit: not an assignment in a section: %q", line)
			}
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			if v == "" {
				u[section][k] = nil
			} else {
				u[section][k] = append(u[section][k], v)
			}
		}
	}
	return u
}

// one is the single value of a key; the test fails if there is not one.
func (u unit) one(t testing.TB, section, key string) string {
	t.Helper()
	if v := u[section][key]; len(v) == 1 {
		return v[0]
	}
	t.Fatalf("unit: [%s] %s= has %d values, want 1: %q", section, key, len(u[section][key]), u[section][key])
	return ""
}

// expandSpecifiers replaces the % specifiers the unit uses; any other one
// fails the test (it would need a mapping here).
func expandSpecifiers(t testing.TB, s string, spec map[byte]string) string {
	t.Helper()
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 == len(s) {
			t.Fatalf("unit: lone %% in %q", s)
		}
		i++
		if s[i] == '%' {
			b.WriteByte('%')
			continue
		}
		v, ok := spec[s[i]]
		if !ok {
			t.Fatalf("unit: specifier %%%c in %q is not mapped by this test", s[i], s)
		}
		b.WriteString(v)
	}
	return b.String()
}

// splitWords splits a systemd command line or Environment= value into
// words, honouring double and single quotes.
func splitWords(t testing.TB, s string) []string {
	t.Helper()
	var words []string
	var cur strings.Builder
	in, quote := false, byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			cur.WriteByte(c)
		case c == '"' || c == '\'':
			quote, in = c, true
		case c == ' ' || c == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if quote != 0 {
		t.Fatalf("unit: unbalanced quote in %q", s)
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}

// readEnvFile reads an EnvironmentFile= as systemd does: KEY=VALUE lines,
// # and ; comments, optional quotes around the value.
func readEnvFile(t testing.TB, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: not KEY=VALUE: %q", path, line)
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		env[strings.TrimSpace(k)] = v
	}
	return env
}

// keysNewerThanDebian12 are unit keys that Debian 12's systemd (252)
// ignores with a warning, with the version that added them. The shipped
// unit may mention them only in comments; checked here too because a
// newer systemd-analyze would not warn about them.
var keysNewerThanDebian12 = map[string]int{"DelegateSubgroup": 254}

// TestSystemdUnitVerifies runs `systemd-analyze verify` on the shipped
// unit. verify exits 0 even for unknown keys (it warns and ignores them,
// as systemd itself would), so any output at all fails the test. The
// ExecStart= binary is a real build and the EnvironmentFile= the shipped
// example, in a temp copy of the unit.
func TestSystemdUnitVerifies(t *testing.T) {
	sa := requiredTool(t, "WORKERSCOPE_SYSTEMD_ANALYZE", "systemd-analyze", "apt-get install systemd")
	root := repoRoot(t)
	text, err := os.ReadFile(filepath.Join(root, unitPath))
	if err != nil {
		t.Fatal(err)
	}
	u := parseUnit(t, string(text))
	for key, version := range keysNewerThanDebian12 {
		if _, ok := u["Service"][key]; ok {
			t.Errorf("the unit sets %s=, which needs systemd >= %d (Debian 12 ships 252): keep it commented", key, version)
		}
	}
	for _, c := range []struct{ key, want string }{
		{"Delegate", "yes"}, {"KillMode", "mixed"}, {"Restart", "on-failure"}, {"OOMPolicy", "continue"},
		{"LoadCredential", "token:/etc/workerscope/token"},
		{"EnvironmentFile", "/etc/workerscope/workerscope.env"}, {"RuntimeDirectory", "workerscope"},
	} {
		if !slices.Contains(u["Service"][c.key], c.want) {
			t.Errorf("the unit lacks %s=%s", c.key, c.want)
		}
	}

	bin := workerscopeBinary(t)
	dir := t.TempDir()
	env := filepath.Join(dir, "workerscope.env")
	if b, err := os.ReadFile(filepath.Join(root, envExample)); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(env, b, 0o600); err != nil {
		t.Fatal(err)
	}
	copyText := strings.NewReplacer(
		"ExecStart=/usr/local/bin/workerscope ", "ExecStart="+bin+" ",
		"EnvironmentFile=/etc/workerscope/workerscope.env", "EnvironmentFile="+env,
	).Replace(string(text))
	if copyText == string(text) || strings.Contains(copyText, "ExecStart=/usr/local/bin/") {
		t.Fatal("the unit's ExecStart=/EnvironmentFile= paths changed: update this test")
	}
	path := filepath.Join(dir, "workerscope.service")
	if err := os.WriteFile(path, []byte(copyText), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sa, "verify", path)
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_COLOR=0", "SYSTEMD_PAGER=")
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// installSteps are the unit's install comment lines (the "#   " block
// after "# Install:"), which docs/deploy-systemd.md repeats after
// `make build`.
func installSteps(t testing.TB) []string {
	t.Helper()
	text, err := os.ReadFile(filepath.Join(repoRoot(t), unitPath))
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	in := false
	for _, line := range strings.Split(string(text), "\n") {
		switch {
		case strings.HasPrefix(line, "# Install:"):
			in = true
		case in && strings.HasPrefix(line, "#   "):
			steps = append(steps, strings.TrimPrefix(line, "#   "))
		case in && len(steps) > 0:
			return steps
		}
	}
	t.Fatalf("%s: no install steps (\"#   \" lines after \"# Install:\")", unitPath)
	return nil
}

// sandbox is the result of running the install steps with every host path
// moved under root: systemd's view of an installed host.
type sandbox struct {
	root  string
	calls string // what the stubbed useradd, systemctl and curl were asked
}

// hostPath is where the sandbox holds an absolute host path.
func (s *sandbox) hostPath(p string) string { return filepath.Join(s.root, p) }

// install runs the unit's install steps as a user pastes them, in a
// checkout holding bin (as `make build` leaves it) and the deploy files,
// with /usr/local/bin, /etc and /var/lib moved under a temp root and
// useradd, systemctl and curl stubbed (they would change the host).
func install(t testing.TB, bin string) *sandbox {
	t.Helper()
	repo := repoRoot(t)
	s := &sandbox{root: t.TempDir()}
	checkout, stubs := t.TempDir(), t.TempDir()
	for _, d := range []string{"usr/local/bin", "etc/systemd/system", "var/lib"} {
		if err := os.MkdirAll(filepath.Join(s.root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{unitPath, envExample} {
		b, err := os.ReadFile(filepath.Join(repo, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(checkout, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(checkout, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(checkout, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(bin, filepath.Join(checkout, "bin", "workerscope")); err != nil {
		t.Fatal(err)
	}
	calls := filepath.Join(stubs, "calls")
	for _, name := range []string{"useradd", "systemctl", "curl"} {
		stub := fmt.Sprintf("#!/bin/sh\necho \"%s $*\" >> %s\n", name, calls)
		if err := os.WriteFile(filepath.Join(stubs, name), []byte(stub), 0o755); err != nil {
			t.Fatal(err)
		}
	}

	moved := strings.NewReplacer("/usr/local/bin/", s.root+"/usr/local/bin/", "/etc/", s.root+"/etc/", "/var/lib/", s.root+"/var/lib/")
	script := moved.Replace(strings.Join(installSteps(t), "\n"))
	// Every other absolute path is one the steps only read (or hand to a
	// stub): nothing may write to the host.
	for _, m := range regexp.MustCompile(`(?:^|[\s'"=])(/[A-Za-z][^\s'"]*)`).FindAllStringSubmatch(script, -1) {
		if p := m[1]; !strings.HasPrefix(p, s.root+"/") && !slices.Contains([]string{"/dev/urandom", "/dev/stdin", "/usr/sbin/nologin"}, p) {
			t.Fatalf("install step uses host path %s; map it into the sandbox in this test", p)
		}
	}
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = checkout
	cmd.Env = append(os.Environ(), "PATH="+stubs+":"+os.Getenv("PATH"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("install steps failed: %v\n%s\nscript:\n%s", err, out, script)
	}
	b, _ := os.ReadFile(calls)
	s.calls = string(b)
	return s
}

// TestSystemdInstallSteps pastes the unit's install comments (in a
// sandbox) and checks what they leave: the files the unit reads, with the
// right modes, a token the binary accepts, the unit enabled. The
// documentation shows the same steps.
func TestSystemdInstallSteps(t *testing.T) {
	steps := installSteps(t)
	doc, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "deploy-systemd.md"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "```sh\nmake build\n" + strings.Join(steps, "\n") + "\n```\n"; !strings.Contains(string(doc), want) {
		t.Errorf("docs/deploy-systemd.md does not show the unit's install steps; want the block\n%s", want)
	}

	bin := filepath.Join(t.TempDir(), "workerscope")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := install(t, bin)
	u := parseUnit(t, readFile(t, s.hostPath("etc/systemd/system/workerscope.service")))
	if got, want := readFile(t, s.hostPath("etc/systemd/system/workerscope.service")), readFile(t, filepath.Join(repoRoot(t), unitPath)); got != want {
		t.Error("the installed unit differs from the shipped one")
	}
	exe := strings.Fields(u.one(t, "Service", "ExecStart"))[0]
	credentials := map[string]string{}
	for _, lc := range u["Service"]["LoadCredential"] {
		name, path, _ := strings.Cut(lc, ":")
		credentials[name] = path
	}
	for _, c := range []struct {
		what, path string
		mode       os.FileMode
	}{
		{"ExecStart= binary", exe, 0o755},
		{"EnvironmentFile=", u.one(t, "Service", "EnvironmentFile"), 0o600},
		{"token credential", credentials["token"], 0o600},
		{"/etc/workerscope", "/etc/workerscope", os.ModeDir | 0o700},
	} {
		st, err := os.Stat(s.hostPath(c.path))
		if err != nil {
			t.Errorf("%s %s after the install steps: %v", c.what, c.path, err)
			continue
		}
		if st.Mode() != c.mode {
			t.Errorf("%s %s: mode %v, want %v", c.what, c.path, st.Mode(), c.mode)
		}
		if sys, ok := st.Sys().(*syscall.Stat_t); ok && (int(sys.Uid) != os.Geteuid() || int(sys.Gid) != os.Getegid()) {
			t.Errorf("%s %s: owner %d:%d, want the installing user's %d:%d (root:root when pasted as root)", c.what, c.path, sys.Uid, sys.Gid, os.Geteuid(), os.Getegid())
		}
	}
	tok := strings.TrimSpace(readFile(t, s.hostPath(credentials["token"])))
	if len(tok) < 16 || !regexp.MustCompile(`^[A-Za-z0-9]+$`).MatchString(tok) {
		t.Errorf("generated token %q: want at least 16 letters and digits (start-up refuses shorter ones)", tok)
	}
	// The user the unit runs as, with its state directory as home.
	user := "useradd --system --home-dir " + s.hostPath("/var/lib/"+u.one(t, "Service", "StateDirectory")) + " --shell /usr/sbin/nologin " + u.one(t, "Service", "User")
	for _, want := range []string{user, "systemctl daemon-reload", "systemctl enable --now workerscope", "curl "} {
		if !strings.Contains(s.calls, want) {
			t.Errorf("the install steps do not run %q; they ran:\n%s", want, s.calls)
		}
	}
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSystemdUnitRunsTheBinary starts the binary the way the shipped unit
// does on a host installed by its own install steps: ExecStart='s command
// line, Environment= and EnvironmentFile= (the installed example), the
// directories systemd creates and announces (RUNTIME_DIRECTORY,
// STATE_DIRECTORY, CREDENTIALS_DIRECTORY with the token credential, mode
// 0600), WorkingDirectory= and nothing else of the test's environment. It
// serves with the credential's token, runs a command with a child process,
// and on SIGTERM to the main process alone (KillMode=mixed) exits 0 within
// TimeoutStopSec= with every worker tree gone. Two values are moved so
// parallel runs cannot collide: the listen port (the example's loopback
// address is checked first) and the OTLP endpoint (to a closed port, as
// when the agent collector is away).
func TestSystemdUnitRunsTheBinary(t *testing.T) {
	bin := workerscopeBinary(t)
	s := install(t, bin)
	u := parseUnit(t, readFile(t, s.hostPath("etc/systemd/system/workerscope.service")))
	svc := u["Service"]

	tmp := publicDir(t, 0) // /var/lib and /run are reachable by every uid
	stateRoot, runtimeRoot, creds := filepath.Join(tmp, "var-lib"), filepath.Join(tmp, "run"), filepath.Join(tmp, "credentials")
	spec := map[byte]string{'d': creds, 'S': stateRoot, 't': runtimeRoot}
	dirs := map[string]string{
		"RUNTIME_DIRECTORY": filepath.Join(runtimeRoot, u.one(t, "Service", "RuntimeDirectory")),
		"STATE_DIRECTORY":   filepath.Join(stateRoot, u.one(t, "Service", "StateDirectory")),
	}
	// systemd creates them with the unit's modes (0755 by default).
	for key, d := range dirs {
		mode := os.FileMode(0o755)
		modeKey := map[string]string{"RUNTIME_DIRECTORY": "RuntimeDirectoryMode", "STATE_DIRECTORY": "StateDirectoryMode"}[key]
		if m := svc[modeKey]; len(m) == 1 {
			v, err := strconv.ParseUint(m[0], 8, 32)
			if err != nil {
				t.Fatalf("%sDirectoryMode=%s: %v", key, m[0], err)
			}
			mode = os.FileMode(v)
		}
		if err := os.MkdirAll(d, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, mode); err != nil { // MkdirAll applies the umask
			t.Fatal(err)
		}
	}
	// LoadCredential=: systemd copies each file into a private directory.
	if err := os.Mkdir(creds, 0o700); err != nil {
		t.Fatal(err)
	}
	token := ""
	for _, lc := range svc["LoadCredential"] {
		name, path, _ := strings.Cut(lc, ":")
		b, err := os.ReadFile(s.hostPath(path))
		if err != nil {
			t.Fatalf("LoadCredential=%s: %v (systemd would refuse to start the unit)", lc, err)
		}
		if err := os.WriteFile(filepath.Join(creds, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
		if name == "token" {
			token = strings.TrimSpace(string(b))
		}
	}
	if token == "" {
		t.Fatal("the unit loads no token credential")
	}

	// The environment: systemd's own, then Environment=, then
	// EnvironmentFile= (which wins), then the directories.
	env := map[string]string{"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
	for _, line := range svc["Environment"] {
		for _, kv := range splitWords(t, expandSpecifiers(t, line, spec)) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				t.Fatalf("Environment=%s: not KEY=VALUE", line)
			}
			env[k] = v
		}
	}
	fileEnv := readEnvFile(t, s.hostPath(u.one(t, "Service", "EnvironmentFile")))
	for _, k := range []string{"WORKERSCOPE_TOKEN", "OTEL_EXPORTER_OTLP_HEADERS", "PYROSCOPE_BASIC_AUTH_PASSWORD"} {
		if _, ok := fileEnv[k]; ok {
			t.Errorf("the example environment file sets the secret %s: secrets are credentials", k)
		}
	}
	if got := fileEnv["WORKERSCOPE_LISTEN"]; got != "127.0.0.1:7070" {
		t.Errorf("the example environment file listens on %q, want loopback 127.0.0.1:7070", got)
	}
	for k, v := range fileEnv {
		env[k] = v
	}
	for k, v := range dirs {
		env[k] = v
	}
	env["CREDENTIALS_DIRECTORY"] = creds
	listen := freePort(t)
	env["WORKERSCOPE_LISTEN"] = listen
	env["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://" + freePort(t)

	argv := splitWords(t, expandSpecifiers(t, u.one(t, "Service", "ExecStart"), spec))
	if strings.ContainsAny(argv[0][:1], "-@:+!") || strings.Contains(strings.Join(argv, " "), "$") {
		t.Fatalf("ExecStart=%s: prefixes and $VARIABLES are not handled by this test", strings.Join(argv, " "))
	}
	if filepath.Base(argv[0]) != "workerscope" {
		t.Fatalf("ExecStart= runs %s, not workerscope", argv[0])
	}
	stopTimeout, err := time.ParseDuration(u.one(t, "Service", "TimeoutStopSec"))
	if err != nil {
		t.Fatalf("TimeoutStopSec=: %v", err)
	}

	p := &proc{cmd: exec.Command(bin, argv[1:]...)}
	p.cmd.Dir = expandSpecifiers(t, u.one(t, "Service", "WorkingDirectory"), spec)
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stdout, p.cmd.Stderr = p, p
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- p.cmd.Wait() }()
	var exitErr error
	hasExited := func() bool {
		select {
		case exitErr = <-exited:
			exited = nil // read once; a nil channel blocks from now on
			return true
		default:
			return exited == nil
		}
	}
	t.Cleanup(func() {
		if !hasExited() {
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("workerscope output:\n%s", tail(p.output(), 4000))
		}
	})

	a := &app{proc: p, url: "http://" + listen}
	get := func(path, tok string) int {
		req, _ := http.NewRequest("GET", a.url+path, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	waitFor(t, 30*time.Second, "workerscope to serve with the credential's token", func() bool {
		if hasExited() {
			return true
		}
		return get("/readyz", "") == 200
	}, p)
	if hasExited() {
		t.Fatalf("workerscope exited at start-up: %v", exitErr)
	}
	if code := get("/api/workers", token); code != 200 {
		t.Fatalf("GET /api/workers with the credential's token: %d", code)
	}
	if code := get("/api/workers", ""); code != 401 {
		t.Errorf("GET /api/workers without a token: %d, want 401", code)
	}

	// A command with the credential's token; its child outlives the
	// response, so SIGTERM finds a tree of two processes.
	req, _ := http.NewRequest("POST", a.url+"/api/sessions/systemd-unit/rpc", strings.NewReader(`{"type":"prompt","message":"under the unit","child_ms":60000}`))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("prompt: %d", resp.StatusCode)
	}
	ws := workersWithToken(t, a, token)
	w, ok := ws["systemd-unit"]
	if !ok {
		t.Fatalf("no worker for the session: %v", ws)
	}
	// The unit's isolation: tier 2 (a uid of WORKERSCOPE_WORKER_UIDS) and
	// tier 3 (Landlock, on this kernel).
	if w.UID == nil || *w.UID < 200000 || *w.UID > 200999 || !w.Sandboxed {
		t.Errorf("worker under the unit: uid %v sandboxed %v, want a uid of 200000-200999 and the sandbox", w.UID, w.Sandboxed)
	}
	instance := instancePrefix(w.ID)
	waitFor(t, 15*time.Second, "the worker and its child", func() bool { return len(workerMarkers(instance)) >= 2 }, p)

	locks, _ := filepath.Glob(filepath.Join(dirs["RUNTIME_DIRECTORY"], "*.lock"))
	if len(locks) != 1 {
		t.Errorf("instance lock files in RUNTIME_DIRECTORY: %v, want one", locks)
	}

	// KillMode=mixed, KillSignal=SIGTERM: the main process alone.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited = nil
		if err != nil {
			t.Errorf("workerscope exited with %v after SIGTERM, want status 0", err)
		}
	case <-time.After(stopTimeout):
		t.Errorf("workerscope did not exit within TimeoutStopSec=%s (systemd would SIGKILL it)", stopTimeout)
	}
	if left := workerMarkers(instance); len(left) > 0 {
		t.Errorf("worker processes left after the supervisor exited: %v", left)
		for pid := range left {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if locks, _ := filepath.Glob(filepath.Join(dirs["RUNTIME_DIRECTORY"], "*.lock")); len(locks) > 0 {
		t.Errorf("lock files left in RUNTIME_DIRECTORY after a clean stop: %v", locks)
	}
}

// workersWithToken is app.workers with another token than the e2e one.
func workersWithToken(t testing.TB, a *app, token string) map[string]workerInfo {
	t.Helper()
	req, _ := http.NewRequest("GET", a.url+"/api/workers", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct{ Workers []workerInfo }
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/api/workers: %d %v", resp.StatusCode, err)
	}
	out := map[string]workerInfo{}
	for _, w := range r.Workers {
		out[w.Key] = w
	}
	return out
}
