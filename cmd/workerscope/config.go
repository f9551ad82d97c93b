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
// WORKERSCOPE_* environment variables, then defaults. The supervisor's own
// settings are filled straight into Worker, the workers.Config that
// workers.New receives, each by its row of settings.
type config struct {
	// Worker is the supervisor's configuration. Zero values are
	// workers.Config's defaults; a 0 on the command line that means
	// "never" is workers.Never.
	Worker workers.Config

	Listen      string
	Token       string
	TokenSource string // "WORKERSCOPE_TOKEN", "--token-file", "the systemd credential token" or "generated"
	DemoWorker  bool   // Worker.Command is the built-in demo worker
	// Drain is how long readiness is off before shutdown proper.
	Drain time.Duration
	// MaxConns caps the HTTP server's open connections (0 = derived from
	// the open-file limit, see maxConns).
	MaxConns  int
	DemoLoad  bool
	LogLevel  slog.Level
	LogFormat string
	// PyroscopeServer and PyroscopeApp override PYROSCOPE_SERVER_ADDRESS
	// and PYROSCOPE_APPLICATION_NAME.
	PyroscopeServer, PyroscopeApp string
	// DropWorkerKey leaves the worker.key attribute off per-worker metrics.
	DropWorkerKey bool
	// Credentials are the systemd credentials other settings were read
	// from (file names in $CREDENTIALS_DIRECTORY; the token's is in
	// TokenSource).
	Credentials []string
	// LogOTLP sends the supervisor's own log records to OTLP too.
	LogOTLP bool
	// Getenv is the environment the settings were read from. The OTel
	// provider and Pyroscope read their settings through it; the OTLP
	// exporter itself reads OTEL_EXPORTER_OTLP_* (endpoint, headers,
	// TLS, timeout, temporality) from the process environment.
	Getenv func(string) string
}

// setting is one flag, its environment variable, its default, and how
// its text fills its target: set returns why a value is invalid (the
// caller names the flag and the variable).
type setting struct {
	flag, env, def, usage string
	// field is the workers.Config field set fills ("" for the others):
	// workers' validation of it is reported under this setting's name.
	field string
	set   func(c *config, v string) error
}

// settings are the rows of `workerscope serve`'s configuration, in the
// order -help lists them.
var settings = []setting{
	{"listen", "WORKERSCOPE_LISTEN", "127.0.0.1:7070", "address to serve HTTP on (loopback unless a token is given)", "",
		func(c *config, v string) error {
			if _, _, err := net.SplitHostPort(v); err != nil || v == "" {
				return errors.New("want host:port, e.g. 127.0.0.1:7070 (empty would listen on every interface)")
			}
			c.Listen = v
			return nil
		}},
	{"token-file", "WORKERSCOPE_TOKEN_FILE", "", "file holding the API token (else WORKERSCOPE_TOKEN; else one is generated and printed)", "",
		nil}, // read with the token's other sources (readToken)
	{"worker-cmd", "WORKERSCOPE_WORKER_CMD", "", `worker command line, e.g. "pi --mode rpc" (default: the built-in demo worker)`, "Command",
		func(c *config, v string) error {
			if strings.TrimSpace(v) == "" {
				c.DemoWorker = true // the argv is this binary's, known at start (newManager)
				return nil
			}
			argv, err := splitCommand(v)
			if err == nil && argv[0] == "" {
				err = errors.New("the program name is empty")
			}
			c.Worker.Command = argv
			return err
		}},
	{"idle-ttl", "WORKERSCOPE_IDLE_TTL", "10m", "stop workers idle for longer than this (0 = never)", "IdleTTL",
		durationOr(func(c *config) *time.Duration { return &c.Worker.IdleTTL }, workers.Never)},
	{"max-workers", "WORKERSCOPE_MAX_WORKERS", "64", "most live workers; when full the longest-idle one is evicted", "MaxWorkers",
		integer(func(c *config) *int { return &c.Worker.MaxWorkers }, 1)},
	{"stop-grace", "WORKERSCOPE_STOP_GRACE", "5s", "time between SIGTERM and SIGKILL when stopping a worker (0 = SIGKILL at once)", "StopGrace",
		durationOr(func(c *config) *time.Duration { return &c.Worker.StopGrace }, workers.Never)},
	{"drain", "WORKERSCOPE_DRAIN", "5s", "on SIGTERM or SIGINT, how long GET /readyz answers 503 while sessions and event streams are still served, before they end and the workers stop (0 = no drain; a second signal ends it early)", "",
		durationOr(func(c *config) *time.Duration { return &c.Drain }, 0)},
	{"max-conns", "WORKERSCOPE_MAX_CONNS", "auto", "most open HTTP connections; at the cap the longest-idle keep-alive connection is closed first (auto = from the open-file limit, see docs/configuration.md)", "",
		func(c *config, v string) error {
			if strings.EqualFold(v, "auto") || v == "" {
				return nil
			}
			return integer(func(c *config) *int { return &c.MaxConns }, httpapi.MinMaxConns)(c, v)
		}},
	{"max-line-bytes", "WORKERSCOPE_MAX_LINE_BYTES", "16777216", "longest worker output line accepted, in bytes (longer ones are skipped and counted)", "MaxLineBytes",
		integer(func(c *config) *int { return &c.Worker.MaxLineBytes }, 1)},
	{"subscriber-buffer-bytes", "WORKERSCOPE_SUBSCRIBER_BUFFER_BYTES", "32MiB", "most event data buffered for one event subscriber that falls behind; more is dropped and announced", "SubscriberBufferBytes",
		byteSize(func(c *config) *int64 { return &c.Worker.SubscriberBufferBytes })},
	{"subscriber-budget-bytes", "WORKERSCOPE_SUBSCRIBER_BUDGET_BYTES", "256MiB", "most event data buffered for all event subscribers together", "SubscriberBytesBudget",
		byteSize(func(c *config) *int64 { return &c.Worker.SubscriberBytesBudget })},
	{"worker-memory-max", "WORKERSCOPE_WORKER_MEMORY_MAX", "0", "memory limit of each worker's whole process tree, e.g. 512MiB or 2GiB (0 = none); see docs/limits.md", "MemoryMax",
		func(c *config, v string) (err error) { c.Worker.MemoryMax, err = workers.ParseByteSize(v); return }},
	{"worker-pids-max", "WORKERSCOPE_WORKER_PIDS_MAX", "0", "most processes and threads in each worker's tree (0 = none)", "PidsMax",
		func(c *config, v string) (err error) { c.Worker.PidsMax, err = workers.ParsePidsMax(v); return }},
	{"worker-cpu-max", "WORKERSCOPE_WORKER_CPU_MAX", "0", "CPU bandwidth of each worker's tree in cores, e.g. 0.5 or 2 (0 = none; needs cgroups)", "CPUMax",
		func(c *config, v string) (err error) { c.Worker.CPUMax, err = workers.ParseCPUCores(v); return }},
	{"cgroups", "WORKERSCOPE_CGROUPS", "auto", "enforce limits with per-worker cgroups: auto (when usable), off (supervisor watchdog only) or required (refuse to start without)", "Cgroups",
		func(c *config, v string) (err error) { c.Worker.Cgroups, err = workers.ParseCgroupMode(v); return }},
	{"worker-uids", "WORKERSCOPE_WORKER_UIDS", "", "run each worker tree as its own uid and gid from this range, e.g. 200000-200999 (needs root or CAP_SETUID, CAP_SETGID, CAP_CHOWN, CAP_KILL, CAP_DAC_OVERRIDE, CAP_FOWNER; see docs/security.md)", "WorkerUIDs",
		func(c *config, v string) (err error) { c.Worker.WorkerUIDs, err = sandbox.ParseUIDRange(v); return }},
	{"worker-dir-root", "WORKERSCOPE_WORKER_DIR_ROOT", "", "where each isolated worker gets its own directory: HOME, working directory and TMPDIR, removed when its tree is gone (default $TMPDIR/workerscope-workers-UID)", "WorkerDirRoot",
		func(c *config, v string) error {
			if v == "" {
				return nil
			}
			if !filepath.IsAbs(v) {
				return errors.New("want an absolute path")
			}
			c.Worker.WorkerDirRoot = filepath.Clean(v)
			return nil
		}},
	{"worker-sandbox", "WORKERSCOPE_WORKER_SANDBOX", "auto", "confine each worker tree with Landlock: auto (when the kernel has it), off, or required (refuse to start without Landlock ABI 6)", "Sandbox",
		func(c *config, v string) (err error) { c.Worker.Sandbox, err = sandbox.ParseMode(v); return }},
	{"worker-sandbox-ro", "WORKERSCOPE_WORKER_SANDBOX_RO", "", "comma-separated extra paths sandboxed workers may read and execute (beyond /usr, /etc, /proc, ... and the worker's own installation)", "SandboxReadOnly",
		func(c *config, v string) (err error) { c.Worker.SandboxReadOnly, err = absPaths(v); return }},
	{"worker-sandbox-rw", "WORKERSCOPE_WORKER_SANDBOX_RW", "", "comma-separated extra paths sandboxed workers may write (beyond their own directory)", "SandboxReadWrite",
		func(c *config, v string) (err error) { c.Worker.SandboxReadWrite, err = absPaths(v); return }},
	{"worker-allow-ports", "WORKERSCOPE_WORKER_ALLOW_PORTS", "443,80", "TCP ports sandboxed workers may connect to (none = no TCP); never the API port", "AllowConnectPorts",
		func(c *config, v string) (err error) { c.Worker.AllowConnectPorts, err = sandbox.ParsePorts(v); return }},
	{"worker-allow-bind-ports", "WORKERSCOPE_WORKER_ALLOW_BIND_PORTS", "", "TCP ports sandboxed workers may bind (default none)", "AllowBindPorts",
		func(c *config, v string) (err error) { c.Worker.AllowBindPorts, err = sandbox.ParsePorts(v); return }},
	{"demo-load", "WORKERSCOPE_DEMO_LOAD", "auto", "light synthetic traffic to a few sessions: true, false, or auto (on with the demo worker)", "",
		nil}, // depends on worker-cmd (parseConfig)
	{"metrics-worker-key", "WORKERSCOPE_METRICS_WORKER_KEY", "true", "put the session key on per-worker metrics as worker.key (false drops it)", "",
		boolean(func(c *config) *bool { return &c.DropWorkerKey }, true)},
	{"command-cost", "WORKERSCOPE_COMMAND_COST", "true", "read each command's cost from its worker's tree at start and end (false saves ~100 µs of CPU per command)", "DisableCommandCost",
		boolean(func(c *config) *bool { return &c.Worker.DisableCommandCost }, true)},
	{"run-commands", "WORKERSCOPE_RUN_COMMANDS", "prompt", "comma-separated command types whose response is followed by a streamed run (agent_start … agent_end) that their span and cost cover", "RunCommands",
		func(c *config, v string) error {
			c.Worker.RunCommands = []string{} // empty means none, not the default
			for typ := range strings.SplitSeq(v, ",") {
				if typ = strings.TrimSpace(typ); typ != "" {
					c.Worker.RunCommands = append(c.Worker.RunCommands, typ)
				}
			}
			return nil
		}},
	{"max-run-duration", "WORKERSCOPE_MAX_RUN_DURATION", "1h", "longest a run is followed after its command's arrival (0 = spans end at the response)", "MaxRunDuration",
		durationOr(func(c *config) *time.Duration { return &c.Worker.MaxRunDuration }, workers.Never)},
	{"pyroscope-server", "PYROSCOPE_SERVER_ADDRESS", "", "Pyroscope server to ship profiles to (profiling is off without one)", "",
		func(c *config, v string) error { c.PyroscopeServer = v; return nil }},
	{"pyroscope-app", "PYROSCOPE_APPLICATION_NAME", "", "Pyroscope application name (default: the OTel service name)", "",
		func(c *config, v string) error { c.PyroscopeApp = v; return nil }},
	{"log-level", "WORKERSCOPE_LOG_LEVEL", "info", "debug, info, warn or error", "",
		func(c *config, v string) error {
			if err := c.LogLevel.UnmarshalText([]byte(v)); err != nil {
				return errors.New("want debug, info, warn or error")
			}
			return nil
		}},
	{"log-format", "WORKERSCOPE_LOG_FORMAT", "text", "text or json", "",
		func(c *config, v string) error {
			if v != "text" && v != "json" {
				return errors.New("want text or json")
			}
			c.LogFormat = v
			return nil
		}},
	{"log-otlp", "WORKERSCOPE_LOG_OTLP", "false", "also send the supervisor's own log records as OTLP log records (with the worker logs; OTEL_LOGS_* settings)", "",
		boolean(func(c *config) *bool { return &c.LogOTLP }, false)},
	{"session-token-budget", "WORKERSCOPE_SESSION_TOKEN_BUDGET", "0", "most model tokens one session may use (pi's totalTokens, summed over its runs); past it the run is aborted and prompts are refused until DELETE /api/sessions/{key} (0 = no budget)", "SessionTokenBudget",
		func(c *config, v string) error {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return errors.New("want a whole number of tokens ≥ 0")
			}
			c.Worker.SessionTokenBudget = n
			return nil
		}},
	{"session-spend-budget-usd", "WORKERSCOPE_SESSION_SPEND_BUDGET_USD", "0", "most US dollars of model calls one session may spend (pi's usage.cost.total), e.g. 2.50; as --session-token-budget (0 = no budget)", "SessionSpendBudgetUSD",
		func(c *config, v string) error {
			f, err := strconv.ParseFloat(strings.TrimPrefix(v, "$"), 64)
			if err != nil || !(f >= 0) || math.IsInf(f, 0) {
				return errors.New("want US dollars ≥ 0, e.g. 2.50")
			}
			c.Worker.SessionSpendBudgetUSD = f
			return nil
		}},
}

// durationOr parses a non-negative duration into the field at; 0 stores
// zero (a 0 that means never or none in the field's own terms, e.g.
// workers.Never).
func durationOr(at func(*config) *time.Duration, zero time.Duration) func(*config, string) error {
	return func(c *config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return errors.New("want a non-negative duration such as 30s or 10m")
		}
		if d == 0 {
			d = zero
		}
		*at(c) = d
		return nil
	}
}

// integer parses an integer ≥ minimum into the field at (1 where 0
// would mean workers' default; the range is workers' to check).
func integer(at func(*config) *int, minimum int) func(*config, string) error {
	return func(c *config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < minimum {
			return fmt.Errorf("want an integer ≥ %d", minimum)
		}
		*at(c) = n
		return nil
	}
}

// byteSize parses a size into the field at: not 0, which would mean
// workers' default (its minimum is workers' to check).
func byteSize(at func(*config) *int64) func(*config, string) error {
	return func(c *config, v string) error {
		n, err := workers.ParseByteSize(v)
		if err != nil || n < 1 {
			return errors.New("want a size such as 32MiB")
		}
		*at(c) = n
		return nil
	}
}

// boolean parses true or false into the field at, negated when the field
// is the setting's opposite (--command-cost fills DisableCommandCost).
func boolean(at func(*config) *bool, negate bool) func(*config, string) error {
	return func(c *config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errors.New("want true or false")
		}
		*at(c) = b != negate
		return nil
	}
}

// absPaths parses a comma-separated list of absolute paths.
func absPaths(v string) ([]string, error) {
	var out []string
	for p := range strings.SplitSeq(v, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("want absolute paths, got %q", p)
		}
		out = append(out, filepath.Clean(p))
	}
	return out, nil
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

// parseConfig reads args (without the program name) and the environment
// in one pass over the settings: each row's value (the flag if given, else
// its variable if set, else its default) fills its target. Every invalid
// value yields an error naming the flag and its variable, all of them
// joined.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("workerscope serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	vals := make(map[string]*flagValue, len(settings))
	for _, s := range settings {
		v := &flagValue{s: s.def, isBool: s.def == "true" || s.def == "false"}
		fs.Var(v, s.flag, s.usage+" [$"+s.env+"]")
		vals[s.flag] = v
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
	credDir := getenv("CREDENTIALS_DIRECTORY")
	getenv, creds, err := withCredentials(getenv, credDir)
	if err != nil {
		return nil, err
	}

	c := &config{Getenv: getenv, Credentials: creds}
	var errs []error
	value := map[string]string{} // each setting's resolved text
	label := func(s setting) string { return "--" + s.flag + " / " + s.env }
	for _, s := range settings {
		v := vals[s.flag].s
		if env, ok := lookup(getenv, s.env); ok && !set[s.flag] {
			v = env
		}
		value[s.flag] = v
		if s.set == nil {
			continue
		}
		if err := s.set(c, v); err != nil {
			errs = append(errs, fmt.Errorf("invalid %s %q: %w", label(s), v, err))
		}
	}
	labelOf := func(name string) string {
		for _, s := range settings {
			if s.flag == name {
				return label(s)
			}
		}
		panic("unknown setting " + name)
	}

	// Settings that depend on others.
	switch v := value["demo-load"]; strings.ToLower(v) {
	case "auto", "":
		c.DemoLoad = c.DemoWorker
	default:
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("invalid %s %q: want true, false or auto", labelOf("demo-load"), v))
		}
		c.DemoLoad = b
	}
	// No sandboxed worker may reach the API port (with --listen :0 serve
	// checks the port it got: exposesAPIPort).
	c.Worker.DenyPorts = listenPort(c.Listen)
	errs = append(errs, c.validateWorker(value)...)
	// Read from the environment only.
	if v := getenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("invalid OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT %q: want true or false", v))
		}
		c.Worker.CaptureAgentContent = b
	}
	// systemd sets RUNTIME_DIRECTORY (several, colon-separated, when the
	// unit names several; the first is ours).
	c.Worker.RuntimeDir, _, _ = strings.Cut(getenv("RUNTIME_DIRECTORY"), ":")
	errs = append(errs, c.readToken(getenv, credDir, value["token-file"], set["token-file"], labelOf("token-file"))...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if c.Token == "" {
		if !isLoopback(c.Listen) {
			return nil, fmt.Errorf("invalid %s %q: not a loopback address: set WORKERSCOPE_TOKEN or --token-file to serve beyond this machine", labelOf("listen"), c.Listen)
		}
		var b [24]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("generate token: %w", err)
		}
		c.Token, c.TokenSource = base64.RawURLEncoding.EncodeToString(b[:]), "generated"
	}
	return c, nil
}

// validateWorker runs workers' own validation of the settings, once, and
// reports each invalid field under the setting that filled it.
func (c *config) validateWorker(value map[string]string) []error {
	wc := c.Worker
	// What newManager adds once the binary's own path is known.
	if c.DemoWorker {
		wc.Command = []string{"workerscope", "demo-worker"}
	}
	wc.SandboxHelper = []string{"workerscope"}
	err := wc.Validate()
	if err == nil {
		return nil
	}
	var errs []error
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var ce *workers.ConfigError
		if errors.As(e, &ce) {
			if i := slices.IndexFunc(settings, func(s setting) bool { return s.field == ce.Field }); i >= 0 {
				s := settings[i]
				errs = append(errs, fmt.Errorf("invalid --%s / %s %q: %w", s.flag, s.env, value[s.flag], ce.Err))
				continue
			}
		}
		errs = append(errs, e)
	}
	return errs
}

// readToken finds the API token: --token-file on the command line, then
// WORKERSCOPE_TOKEN, then WORKERSCOPE_TOKEN_FILE, then systemd's credential
// $CREDENTIALS_DIRECTORY/token; none leaves it empty (generated later,
// loopback only).
func (c *config) readToken(getenv func(string) string, credDir, tokenFile string, flagGiven bool, fileLabel string) []error {
	var errs []error
	read := func(path, label, source string) {
		b, err := os.ReadFile(path)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("invalid %s: %w", label, err))
		case strings.TrimSpace(string(b)) == "":
			errs = append(errs, fmt.Errorf("invalid %s %q: the file is empty", label, path))
		default:
			c.Token, c.TokenSource = strings.TrimSpace(string(b)), source
		}
	}
	credToken := ""
	if credDir != "" {
		if _, err := os.Stat(filepath.Join(credDir, tokenCredential)); err == nil {
			credToken = filepath.Join(credDir, tokenCredential)
		}
	}
	if tok, ok := lookup(getenv, "WORKERSCOPE_TOKEN"); ok && !flagGiven {
		c.Token, c.TokenSource = strings.TrimSpace(tok), "WORKERSCOPE_TOKEN"
		if c.Token == "" {
			errs = append(errs, errors.New("invalid WORKERSCOPE_TOKEN: set but empty"))
		}
	} else if tokenFile != "" {
		read(tokenFile, fileLabel, "--token-file")
	} else if credToken != "" && !flagGiven {
		read(credToken, "credential token ($CREDENTIALS_DIRECTORY/token)", "the systemd credential token")
	}
	if c.Token != "" && len(c.Token) < 16 {
		errs = append(errs, fmt.Errorf("invalid token from %s: %d characters; use at least 16", c.TokenSource, len(c.Token)))
	}
	return errs
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
	return slices.Contains(c.Worker.AllowConnectPorts, port) || slices.Contains(c.Worker.AllowBindPorts, port)
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
