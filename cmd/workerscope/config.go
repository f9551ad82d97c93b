package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/workerscope/workerscope/httpapi"
	"github.com/workerscope/workerscope/internal/sandbox"
	"github.com/workerscope/workerscope/workers"
)

// config is every setting of `workerscope serve`, from flags, then
// WORKERSCOPE_* environment variables, then defaults.
type config struct {
	Listen      string
	Token       string
	TokenSource string // "WORKERSCOPE_TOKEN", "--token-file", "the systemd credential token" or "generated"
	WorkerCmd   []string
	DemoWorker  bool // WorkerCmd is the built-in demo worker
	IdleTTL     time.Duration
	MaxWorkers  int
	StopGrace   time.Duration
	// Drain is how long readiness is off before shutdown proper.
	Drain        time.Duration
	MaxLineBytes int
	// MaxConns caps the HTTP server's open connections (0 = derived from
	// the open-file limit, see maxConns).
	MaxConns int
	// SubscriberBufferBytes and SubscriberBytesBudget bound the event data
	// buffered per SSE subscriber and for all of them.
	SubscriberBufferBytes, SubscriberBytesBudget int64
	// Per-worker limits (0 = none) and whether they may use cgroups.
	MemoryMax int64
	PidsMax   int64
	CPUMax    float64
	Cgroups   workers.CgroupMode
	// Worker isolation (docs/security.md): per-worker uids (tier 2), the
	// per-worker directory root, and the Landlock sandbox (tier 3).
	WorkerUIDs                 sandbox.UIDRange
	WorkerDirRoot              string
	Sandbox                    sandbox.Mode
	SandboxRO, SandboxRW       []string
	AllowPorts, AllowBindPorts []uint16
	DemoLoad                   bool
	LogLevel                   slog.Level
	LogFormat                  string
	// PyroscopeServer and PyroscopeApp override PYROSCOPE_SERVER_ADDRESS
	// and PYROSCOPE_APPLICATION_NAME.
	PyroscopeServer, PyroscopeApp string
	// DropWorkerKey leaves the worker.key attribute off per-worker metrics.
	DropWorkerKey bool
	// NoCommandCost turns off the per-command cost reading.
	NoCommandCost bool
	// RunCommands are the command types whose response may be followed
	// by a streamed run; MaxRunDuration bounds how long one is followed
	// (0: runs are not followed).
	RunCommands    []string
	MaxRunDuration time.Duration
	// RuntimeDir is where the instance's lock file goes (leftover
	// recovery): systemd's $RUNTIME_DIRECTORY (RuntimeDirectory=), which
	// survives restarts of the unit with RuntimeDirectoryPreserve=yes and
	// is not wiped by PrivateTmp=; empty for the workers package's default.
	RuntimeDir string
	// Credentials are the systemd credentials other settings were read
	// from (file names in $CREDENTIALS_DIRECTORY; the token's is in
	// TokenSource).
	Credentials []string
	// LogOTLP sends the supervisor's own log records to OTLP too.
	LogOTLP bool
	// SessionTokenBudget and SessionSpendBudgetUSD bound each session's
	// model usage (0 = none); CaptureAgentContent is the GenAI
	// conventions' opt-in for message content
	// (OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true).
	SessionTokenBudget    int64
	SessionSpendBudgetUSD float64
	CaptureAgentContent   bool
	// Getenv is the environment the settings were read from. The OTel
	// provider and Pyroscope read their settings through it; the OTLP
	// exporter itself reads OTEL_EXPORTER_OTLP_* (endpoint, headers,
	// TLS, timeout, temporality) from the process environment.
	Getenv func(string) string
}

// setting describes one flag and its environment variable.
type setting struct {
	flag, env, def, usage string
}

var settings = []setting{
	{"listen", "WORKERSCOPE_LISTEN", "127.0.0.1:7070", "address to serve HTTP on (loopback unless a token is given)"},
	{"token-file", "WORKERSCOPE_TOKEN_FILE", "", "file holding the API token (else WORKERSCOPE_TOKEN; else one is generated and printed)"},
	{"worker-cmd", "WORKERSCOPE_WORKER_CMD", "", `worker command line, e.g. "pi --mode rpc" (default: the built-in demo worker)`},
	{"idle-ttl", "WORKERSCOPE_IDLE_TTL", "10m", "stop workers idle for longer than this (0 = never)"},
	{"max-workers", "WORKERSCOPE_MAX_WORKERS", "64", "most live workers; when full the longest-idle one is evicted"},
	{"stop-grace", "WORKERSCOPE_STOP_GRACE", "5s", "time between SIGTERM and SIGKILL when stopping a worker"},
	{"drain", "WORKERSCOPE_DRAIN", "5s", "on SIGTERM or SIGINT, how long GET /readyz answers 503 while sessions and event streams are still served, before they end and the workers stop (0 = no drain; a second signal ends it early)"},
	{"max-conns", "WORKERSCOPE_MAX_CONNS", "auto", "most open HTTP connections; at the cap the longest-idle keep-alive connection is closed first (auto = from the open-file limit, see docs/configuration.md)"},
	{"max-line-bytes", "WORKERSCOPE_MAX_LINE_BYTES", "16777216", "longest worker output line accepted, in bytes (longer ones are skipped and counted)"},
	{"subscriber-buffer-bytes", "WORKERSCOPE_SUBSCRIBER_BUFFER_BYTES", "32MiB", "most event data buffered for one event subscriber that falls behind; more is dropped and announced"},
	{"subscriber-budget-bytes", "WORKERSCOPE_SUBSCRIBER_BUDGET_BYTES", "256MiB", "most event data buffered for all event subscribers together"},
	{"worker-memory-max", "WORKERSCOPE_WORKER_MEMORY_MAX", "0", "memory limit of each worker's whole process tree, e.g. 512MiB or 2GiB (0 = none); see docs/limits.md"},
	{"worker-pids-max", "WORKERSCOPE_WORKER_PIDS_MAX", "0", "most processes and threads in each worker's tree (0 = none)"},
	{"worker-cpu-max", "WORKERSCOPE_WORKER_CPU_MAX", "0", "CPU bandwidth of each worker's tree in cores, e.g. 0.5 or 2 (0 = none; needs cgroups)"},
	{"cgroups", "WORKERSCOPE_CGROUPS", "auto", "enforce limits with per-worker cgroups: auto (when usable), off (supervisor watchdog only) or required (refuse to start without)"},
	{"worker-uids", "WORKERSCOPE_WORKER_UIDS", "", "run each worker tree as its own uid and gid from this range, e.g. 200000-200999 (needs root or CAP_SETUID, CAP_SETGID, CAP_CHOWN, CAP_KILL, CAP_DAC_OVERRIDE, CAP_FOWNER; see docs/security.md)"},
	{"worker-dir-root", "WORKERSCOPE_WORKER_DIR_ROOT", "", "where each isolated worker gets its own directory: HOME, working directory and TMPDIR, removed when its tree is gone (default $TMPDIR/workerscope-workers-UID)"},
	{"worker-sandbox", "WORKERSCOPE_WORKER_SANDBOX", "auto", "confine each worker tree with Landlock: auto (when the kernel has it), off, or required (refuse to start without Landlock ABI 6)"},
	{"worker-sandbox-ro", "WORKERSCOPE_WORKER_SANDBOX_RO", "", "comma-separated extra paths sandboxed workers may read and execute (beyond /usr, /etc, /proc, ... and the worker's own installation)"},
	{"worker-sandbox-rw", "WORKERSCOPE_WORKER_SANDBOX_RW", "", "comma-separated extra paths sandboxed workers may write (beyond their own directory)"},
	{"worker-allow-ports", "WORKERSCOPE_WORKER_ALLOW_PORTS", "443,80", "TCP ports sandboxed workers may connect to (none = no TCP); never the API port"},
	{"worker-allow-bind-ports", "WORKERSCOPE_WORKER_ALLOW_BIND_PORTS", "", "TCP ports sandboxed workers may bind (default none)"},
	{"demo-load", "WORKERSCOPE_DEMO_LOAD", "auto", "light synthetic traffic to a few sessions: true, false, or auto (on with the demo worker)"},
	{"metrics-worker-key", "WORKERSCOPE_METRICS_WORKER_KEY", "true", "put the session key on per-worker metrics as worker.key (false drops it)"},
	{"command-cost", "WORKERSCOPE_COMMAND_COST", "true", "read each command's cost from its worker's tree at start and end (false saves ~100 µs of CPU per command)"},
	{"run-commands", "WORKERSCOPE_RUN_COMMANDS", "prompt", "comma-separated command types whose response is followed by a streamed run (agent_start … agent_end) that their span and cost cover"},
	{"max-run-duration", "WORKERSCOPE_MAX_RUN_DURATION", "1h", "longest a run is followed after its command's arrival (0 = spans end at the response)"},
	{"pyroscope-server", "PYROSCOPE_SERVER_ADDRESS", "", "Pyroscope server to ship profiles to (profiling is off without one)"},
	{"pyroscope-app", "PYROSCOPE_APPLICATION_NAME", "", "Pyroscope application name (default: the OTel service name)"},
	{"log-level", "WORKERSCOPE_LOG_LEVEL", "info", "debug, info, warn or error"},
	{"log-format", "WORKERSCOPE_LOG_FORMAT", "text", "text or json"},
	{"log-otlp", "WORKERSCOPE_LOG_OTLP", "false", "also send the supervisor's own log records as OTLP log records (with the worker logs; OTEL_LOGS_* settings)"},
	{"session-token-budget", "WORKERSCOPE_SESSION_TOKEN_BUDGET", "0", "most model tokens one session may use (pi's totalTokens, summed over its runs); past it the run is aborted and prompts are refused until DELETE /api/sessions/{key} (0 = no budget)"},
	{"session-spend-budget-usd", "WORKERSCOPE_SESSION_SPEND_BUDGET_USD", "0", "most US dollars of model calls one session may spend (pi's usage.cost.total), e.g. 2.50; as --session-token-budget (0 = no budget)"},
}

// flagValue is a setting's text as given on the command line. A setting
// whose default is true or false is a boolean flag too: given bare
// (--log-otlp) it reads true, as Go's own boolean flags do.
type flagValue struct {
	s      string
	isBool bool
}

func (v *flagValue) String() string     { return v.s }
func (v *flagValue) Set(x string) error { v.s = x; return nil }
func (v *flagValue) IsBoolFlag() bool   { return v.isBool }

// parseConfig reads args (without the program name) and the environment.
// Every invalid value yields an error naming the flag and its variable.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("workerscope serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	vals := make(map[string]*string, len(settings))
	for _, s := range settings {
		v := &flagValue{s: s.def, isBool: s.def == "true" || s.def == "false"}
		fs.Var(v, s.flag, s.usage+" [$"+s.env+"]")
		vals[s.flag] = &v.s
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: workerscope [serve] [flags]\n       workerscope demo-worker\n       workerscope version\n\nFlags (each also read from its environment variable):\n")
		fs.PrintDefaults()
		fmt.Fprintf(fs.Output(), "\nThe token comes from WORKERSCOPE_TOKEN or --token-file. OpenTelemetry and Pyroscope use their standard OTEL_* and PYROSCOPE_* variables.\n")
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	get := func(name string) (string, string) {
		for _, s := range settings {
			if s.flag != name {
				continue
			}
			label := "--" + s.flag + " / " + s.env
			if !set[name] {
				if v, ok := lookup(getenv, s.env); ok {
					return v, label
				}
			}
			return *vals[name], label
		}
		panic("unknown setting " + name)
	}

	credDir := getenv("CREDENTIALS_DIRECTORY")
	getenv, creds, err := withCredentials(getenv, credDir)
	if err != nil {
		return nil, err
	}
	c := &config{Getenv: getenv, Credentials: creds}
	var errs []error
	bad := func(label, v string, why string) {
		errs = append(errs, fmt.Errorf("invalid %s %q: %s", label, v, why))
	}
	duration := func(name string) time.Duration {
		v, label := get(name)
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			bad(label, v, "want a non-negative duration such as 30s or 10m")
		}
		return d
	}
	integer := func(name string, minimum int) int {
		v, label := get(name)
		n, err := strconv.Atoi(v)
		if err != nil || n < minimum {
			bad(label, v, fmt.Sprintf("want an integer ≥ %d", minimum))
		}
		return n
	}

	c.Listen, _ = get("listen")
	if v, label := get("listen"); v == "" {
		bad(label, v, "want host:port, e.g. 127.0.0.1:7070 (empty would listen on every interface)")
	} else if _, _, err := net.SplitHostPort(v); err != nil {
		bad(label, v, "want host:port, e.g. 127.0.0.1:7070")
	}
	c.IdleTTL = duration("idle-ttl")
	c.StopGrace = duration("stop-grace")
	c.Drain = duration("drain")
	c.MaxRunDuration = duration("max-run-duration")
	c.RunCommands = []string{} // an empty --run-commands means none, not the default
	if v, _ := get("run-commands"); v != "" {
		for _, typ := range strings.Split(v, ",") {
			if typ = strings.TrimSpace(typ); typ != "" {
				c.RunCommands = append(c.RunCommands, typ)
			}
		}
	}
	c.MaxWorkers = integer("max-workers", 1)
	c.MaxLineBytes = integer("max-line-bytes", 1024)
	if v, _ := get("max-conns"); strings.ToLower(v) != "auto" && v != "" {
		c.MaxConns = integer("max-conns", httpapi.MinMaxConns)
	}
	limit := func(name string, parse func(string) error) {
		if v, label := get(name); v != "" {
			if err := parse(v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", label, err))
			}
		}
	}
	byteSize := func(name string, dst *int64) {
		v, label := get(name)
		n, err := workers.ParseByteSize(v)
		if err != nil || n < 1024 {
			bad(label, v, "want a size ≥ 1KiB, e.g. 32MiB")
		}
		*dst = n
	}
	byteSize("subscriber-buffer-bytes", &c.SubscriberBufferBytes)
	byteSize("subscriber-budget-bytes", &c.SubscriberBytesBudget)
	limit("worker-memory-max", func(v string) (err error) { c.MemoryMax, err = workers.ParseByteSize(v); return })
	limit("worker-pids-max", func(v string) (err error) { c.PidsMax, err = workers.ParsePidsMax(v); return })
	limit("worker-cpu-max", func(v string) (err error) { c.CPUMax, err = workers.ParseCPUCores(v); return })
	limit("cgroups", func(v string) (err error) { c.Cgroups, err = workers.ParseCgroupMode(v); return })
	limit("worker-uids", func(v string) (err error) { c.WorkerUIDs, err = sandbox.ParseUIDRange(v); return })
	limit("worker-sandbox", func(v string) (err error) { c.Sandbox, err = sandbox.ParseMode(v); return })
	limit("worker-allow-ports", func(v string) (err error) { c.AllowPorts, err = sandbox.ParsePorts(v); return })
	limit("worker-allow-bind-ports", func(v string) (err error) { c.AllowBindPorts, err = sandbox.ParsePorts(v); return })
	paths := func(name string) []string {
		v, label := get(name)
		var out []string
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			if !filepath.IsAbs(p) {
				bad(label, p, "want absolute paths")
			}
			out = append(out, filepath.Clean(p))
		}
		return out
	}
	c.SandboxRO, c.SandboxRW = paths("worker-sandbox-ro"), paths("worker-sandbox-rw")
	if v, label := get("worker-dir-root"); v != "" {
		if !filepath.IsAbs(v) {
			bad(label, v, "want an absolute path")
		}
		c.WorkerDirRoot = filepath.Clean(v)
	}
	for _, p := range listenPort(c.Listen) { // with :0, serve checks the port it got
		if c.exposesAPIPort(p) {
			_, label := get("worker-allow-ports")
			errs = append(errs, fmt.Errorf("invalid %s: includes %d, the API port (--listen): workers must never reach it", label, p))
		}
	}
	if c.MemoryMax > 0 && c.MemoryMax < 1<<20 {
		_, label := get("worker-memory-max")
		errs = append(errs, fmt.Errorf("%s: %d bytes is below the smallest limit, 1MiB", label, c.MemoryMax))
	}

	if v, label := get("worker-cmd"); strings.TrimSpace(v) != "" {
		argv, err := splitCommand(v)
		if err == nil && argv[0] == "" {
			err = errors.New("the program name is empty")
		}
		if err != nil {
			bad(label, v, err.Error())
		}
		c.WorkerCmd = argv
	} else {
		c.DemoWorker = true
	}

	switch v, label := get("demo-load"); strings.ToLower(v) {
	case "auto", "":
		c.DemoLoad = c.DemoWorker
	default:
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad(label, v, "want true, false or auto")
		}
		c.DemoLoad = b
	}
	if v, label := get("metrics-worker-key"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad(label, v, "want true or false")
		}
		c.DropWorkerKey = !b
	}
	if v, label := get("log-otlp"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad(label, v, "want true or false")
		}
		c.LogOTLP = b
	}
	if v, label := get("command-cost"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad(label, v, "want true or false")
		}
		c.NoCommandCost = !b
	}
	if v, label := get("log-level"); v != "" {
		if err := c.LogLevel.UnmarshalText([]byte(v)); err != nil {
			bad(label, v, "want debug, info, warn or error")
		}
	}
	if v, label := get("session-token-budget"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			bad(label, v, "want a whole number of tokens ≥ 0")
		}
		c.SessionTokenBudget = n
	}
	if v, label := get("session-spend-budget-usd"); v != "" {
		f, err := strconv.ParseFloat(strings.TrimPrefix(v, "$"), 64)
		if err != nil || !(f >= 0) || math.IsInf(f, 0) {
			bad(label, v, "want US dollars ≥ 0, e.g. 2.50")
		}
		c.SessionSpendBudgetUSD = f
	}
	if v := getenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", v, "want true or false")
		}
		c.CaptureAgentContent = b
	}
	// systemd sets RUNTIME_DIRECTORY (several, colon-separated, when the
	// unit names several; the first is ours).
	c.RuntimeDir, _, _ = strings.Cut(getenv("RUNTIME_DIRECTORY"), ":")
	c.PyroscopeServer, _ = get("pyroscope-server")
	c.PyroscopeApp, _ = get("pyroscope-app")
	c.LogFormat, _ = get("log-format")
	if c.LogFormat != "text" && c.LogFormat != "json" {
		_, label := get("log-format")
		bad(label, c.LogFormat, "want text or json")
	}

	// The token: --token-file on the command line, then WORKERSCOPE_TOKEN,
	// then WORKERSCOPE_TOKEN_FILE, then systemd's credential
	// $CREDENTIALS_DIRECTORY/token, else generated (loopback only).
	credToken := ""
	if credDir != "" {
		if _, err := os.Stat(filepath.Join(credDir, tokenCredential)); err == nil {
			credToken = filepath.Join(credDir, tokenCredential)
		}
	}
	readToken := func(path, label, source string) {
		b, err := os.ReadFile(path)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("invalid %s: %w", label, err))
		case strings.TrimSpace(string(b)) == "":
			bad(label, path, "the file is empty")
		default:
			c.Token, c.TokenSource = strings.TrimSpace(string(b)), source
		}
	}
	if tok, ok := lookup(getenv, "WORKERSCOPE_TOKEN"); ok && !set["token-file"] {
		c.Token, c.TokenSource = strings.TrimSpace(tok), "WORKERSCOPE_TOKEN"
		if c.Token == "" {
			errs = append(errs, errors.New("invalid WORKERSCOPE_TOKEN: set but empty"))
		}
	} else if path, label := get("token-file"); path != "" {
		readToken(path, label, "--token-file")
	} else if credToken != "" && !set["token-file"] {
		readToken(credToken, "credential token ($CREDENTIALS_DIRECTORY/token)", "the systemd credential token")
	}
	if c.Token != "" && len(c.Token) < 16 {
		errs = append(errs, fmt.Errorf("invalid token from %s: %d characters; use at least 16", c.TokenSource, len(c.Token)))
	}
	if c.Token == "" && len(errs) == 0 {
		if !isLoopback(c.Listen) {
			_, label := get("listen")
			bad(label, c.Listen, "not a loopback address: set WORKERSCOPE_TOKEN or --token-file to serve beyond this machine")
		} else {
			var b [24]byte
			if _, err := rand.Read(b[:]); err != nil {
				return nil, fmt.Errorf("generate token: %w", err)
			}
			c.Token, c.TokenSource = base64.RawURLEncoding.EncodeToString(b[:]), "generated"
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

func lookup(getenv func(string) string, key string) (string, bool) {
	v := getenv(key)
	return v, v != ""
}

// listenPort is the API port of a host:port listen address (none for 0).
func listenPort(addr string) []uint16 {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return nil
	}
	return []uint16{uint16(p)}
}

// exposesAPIPort reports whether the sandbox's allowed ports include
// port, the API's: no sandboxed worker may ever reach it.
func (c *config) exposesAPIPort(port uint16) bool {
	return slices.Contains(c.AllowPorts, port) || slices.Contains(c.AllowBindPorts, port)
}

// isLoopback reports whether a listen address binds loopback only.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// splitCommand splits a command line into argv the way a POSIX shell would
// for plain words, single and double quotes and backslash escapes; it runs
// no shell and expands nothing.
func splitCommand(s string) ([]string, error) {
	var argv []string
	var cur strings.Builder
	inWord := false
	var quote rune
	escaped := false
	for _, r := range s {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case r == '\\' && quote != '\'':
			escaped, inWord = true, true
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case unicode.IsSpace(r):
			if inWord {
				argv = append(argv, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote", quote)
	}
	if escaped {
		return nil, errors.New("trailing backslash")
	}
	if inWord {
		argv = append(argv, cur.String())
	}
	if len(argv) == 0 {
		return nil, errors.New("empty command")
	}
	return argv, nil
}
