package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/workerscope/workerscope/httpapi"
	"github.com/workerscope/workerscope/internal/sandbox"
	"github.com/workerscope/workerscope/telemetry/otelsetup"
	"github.com/workerscope/workerscope/telemetry/oteltrace"
	"github.com/workerscope/workerscope/workers"
	"github.com/workerscope/workerscope/workers/demoworker"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = ""

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if getenv(sandbox.RoleEnv) != "" {
		return sandbox.Main() // the helper that confines a worker and execs it
	}
	if getenv(demoworker.RoleEnv) != "" {
		return demoworker.Main()
	}
	cmd := "serve"
	if len(args) > 0 && !isFlag(args[0]) {
		cmd, args = args[0], args[1:]
	}
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-version" || args[0] == "-v") {
		cmd = "version" // as Go tools and most daemons take it
	}
	switch cmd {
	case "serve":
		cfg, err := parseConfig(args, getenv, stderr)
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		if err != nil {
			fmt.Fprintf(stderr, "workerscope: %v\n", err)
			return 2
		}
		if err := serve(cfg, stdout, stderr); err != nil {
			fmt.Fprintf(stderr, "workerscope: %v\n", err)
			return 1
		}
		return 0
	case "demo-worker":
		return demoworker.Main() // RoleEnv unset: the worker role

	case "version":
		fmt.Fprintln(stdout, buildVersion())
		return 0
	default:
		fmt.Fprintf(stderr, "workerscope: unknown command %q (want serve, demo-worker or version)\n", cmd)
		return 2
	}
}

func isFlag(s string) bool { return len(s) > 0 && s[0] == '-' }

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// logHandler is the handler of the supervisor's own log lines on w.
func logHandler(cfg *config, w io.Writer) slog.Handler {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.NewJSONHandler(w, opts)
	}
	return slog.NewTextHandler(w, opts)
}

// serve runs until SIGINT or SIGTERM, then shuts down within the stop grace
// plus a few seconds. It builds in the order the data flows: telemetry
// (provider, profiling, what the supervisor reports to), the supervisor
// reporting to it, the API, the sampler and instruments reading the
// supervisor, then the listener; it stops them in reverse.
func serve(cfg *config, stdout, stderr io.Writer) error {
	started := time.Now()
	version := buildVersion()
	stderrLog := logHandler(cfg, stderr)
	log := slog.New(stderrLog)
	slog.SetDefault(log)
	// Workers run model-chosen commands: before any of them exists, close
	// the supervisor's memory and environment to them (docs/security.md).
	if state, err := closeToWorkers(); err != nil {
		log.Warn("supervisor stays dumpable: workers of its uid can read its environment", "err", err)
	} else {
		log.Info("supervisor "+state, "credentials", cfg.Credentials)
	}
	if err := exporterEnv(cfg.Getenv); err != nil {
		return err
	}
	tel, err := startTelemetry(context.Background(), cfg, version, log.With("component", "telemetry"), log.With("component", "otel"))
	if err != nil {
		return err
	}
	if cfg.LogOTLP {
		// From here the supervisor's own records are exported too, up to
		// the telemetry's shutdown (its last export flushes them).
		log = slog.New(otelsetup.NewSlogTee(stderrLog, tel.provider.LoggerProvider, version))
		slog.SetDefault(log)
	}
	mgr, err := newManager(cfg, tel, log.With("component", "workers"))
	if err != nil {
		abortStart(tel, nil)
		return err
	}
	api, err := httpapi.New(httpapi.Options{Token: cfg.Token, Manager: mgr, Logger: log.With("component", "http"), Version: version})
	if err != nil {
		abortStart(tel, mgr)
		return err
	}
	obs := observed{sseClients: api.SSEClients, started: started}
	if err := tel.observe(cfg, mgr, obs, log.With("component", "telemetry")); err != nil {
		abortStart(tel, mgr)
		return err
	}
	// Everything that reads a secret has read it.
	if removed := scrubSecrets(); len(removed) > 0 {
		log.Info("secrets removed from the supervisor's environment", "vars", removed)
	}
	tel.mount(api, mgr, obs, version)

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		abortStart(tel, mgr)
		return fmt.Errorf("listen on %s (--listen / WORKERSCOPE_LISTEN): %w", cfg.Listen, err)
	}
	// With --listen :0 the API port is known only now: no sandboxed worker
	// may reach it either.
	if port := uint16(ln.Addr().(*net.TCPAddr).Port); cfg.exposesAPIPort(port) {
		_ = ln.Close()
		abortStart(tel, mgr)
		return fmt.Errorf("the API listens on port %d, which --worker-allow-ports lets workers reach", port)
	}
	handler := api.Handler()
	if tel.provider.Tracing {
		handler = oteltrace.Middleware(handler, tel.provider.Propagator) // a caller's traceparent parents the command spans (OTEL_PROPAGATORS)
	}
	srv, limited := httpapi.NewHTTPServer(handler, ln, httpapi.ServerOptions{MaxConns: maxConns(cfg), Logger: log})
	printBanner(stdout, cfg, version, ln.Addr().String())
	w := mgr.Config() // defaults filled in
	log.Info("started", "listen", ln.Addr().String(), "worker", workerLabel(cfg), "idle_ttl", w.IdleTTL,
		"max_workers", w.MaxWorkers, "max_conns", limited.Stats().Max, "stop_grace", w.StopGrace, "demo_load", cfg.DemoLoad,
		"otlp_endpoint", tel.provider.Endpoint, "otlp_protocol", tel.provider.Protocol,
		"traces_endpoint", tel.provider.TracesEndpoint, "logs_endpoint", tel.provider.LogsEndpoint,
		"service_name", tel.provider.ServiceName, "service_instance_id", tel.provider.InstanceID)

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(limited) }()
	if cfg.DemoLoad {
		go demoLoad(ctx, mgr, log.With("component", "demo-load"))
	}
	// The pool, the telemetry and the listener are up: from here a load
	// balancer may send sessions (GET /readyz answers 200).
	api.SetReady()
	var runErr error
	select {
	case sig := <-sigs:
		drain(cfg, log, api, sig, sigs, serveErr)
	case err := <-serveErr:
		runErr = fmt.Errorf("http server: %w", err)
	}
	stop()
	signal.Stop(sigs) // from here a further signal ends the process at once
	shutdown(cfg, log, api, srv, mgr, tel)
	return runErr
}

// drain is the first step of a graceful shutdown: GET /readyz answers 503
// from now on, so a load balancer stops sending new sessions, while
// sessions and event streams are still served for --drain. A second signal
// (or the server failing) ends the drain at once.
func drain(cfg *config, log *slog.Logger, api *httpapi.Server, sig os.Signal, sigs <-chan os.Signal, serveErr <-chan error) {
	api.Drain()
	if cfg.Drain <= 0 {
		log.Info("shutting down", "signal", sig.String())
		return
	}
	log.Info("shutting down: draining (readiness off, sessions still served); a second signal stops at once", "signal", sig.String(), "drain", cfg.Drain)
	t := time.NewTimer(cfg.Drain)
	defer t.Stop()
	select {
	case <-t.C:
	case sig := <-sigs:
		log.Info("drain cut short", "signal", sig.String())
	case <-serveErr:
	}
}

// startAbortBudget bounds the clean-up of a start-up that failed: no
// worker has run yet, so a last export has nothing worth waiting for (a
// collector that is down would otherwise hold the error for the OTLP
// timeout).
const startAbortBudget = time.Second

// abortStart undoes a start-up that failed after the telemetry started
// (mgr nil: before the supervisor did).
func abortStart(tel *telemetryStack, mgr *workers.Manager) {
	ctx, cancel := context.WithTimeout(context.Background(), startAbortBudget)
	defer cancel()
	if mgr != nil {
		_ = mgr.Close(ctx)
	}
	_ = tel.shutdown(ctx)
}

// fdsPerWorker is a generous count of the descriptors one worker costs the
// supervisor: its three pipes, two pidfds (os/exec's and the exit
// watcher's), up to five cgroup usage files kept open (cgroup.Meter: CPU,
// memory, tasks, members; two for CPU on a v1-only host), and cgroup and
// /proc files while it is spawned, measured or stopped. (The sampler's
// kept-open stat files have a budget of their own.)
const fdsPerWorker = 12

// maxConns is the connection cap: --max-conns, else derived from the
// open-file limit keeping 128 descriptors plus fdsPerWorker per worker for
// everything but connections, so spawning and stopping workers never fail
// for lack of descriptors under a connection storm.
func maxConns(cfg *config) int {
	if cfg.MaxConns > 0 {
		return cfg.MaxConns
	}
	return httpapi.MaxConnsFor(nofileLimit(), 128+fdsPerWorker*cfg.Worker.MaxWorkers)
}

// newManager is the supervisor as the settings configure it, reporting
// to tel.
func newManager(cfg *config, tel *telemetryStack, log *slog.Logger) (*workers.Manager, error) {
	wcfg := cfg.Worker
	wcfg.Logger = log
	wcfg.EnvDrop = workerEnvDrop()
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("locate own binary (demo worker, sandbox helper): %w", err)
	}
	// Isolated workers start through this binary's sandbox helper role.
	wcfg.SandboxHelper = []string{exe}
	if cfg.DemoWorker {
		wcfg.Command = []string{exe, "demo-worker"}
	}
	tel.wire(&wcfg)
	return workers.New(wcfg)
}

// workerEnvDrop is what workers must not inherit: the supervisor's own
// settings and secrets, systemd's credentials directory, and the
// telemetry settings (an OTel-instrumented worker would report as
// workerscope). WORKERSCOPE_DEMO_* pass: they are the demo worker's own
// switches (workers/demoworker).
func workerEnvDrop() []string {
	drop := []string{"WORKERSCOPE_TOKEN", "CREDENTIALS_DIRECTORY", "OTEL_", "PYROSCOPE_"}
	for _, s := range settings {
		if strings.HasPrefix(s.env, "WORKERSCOPE_") {
			drop = append(drop, s.env)
		}
	}
	return drop
}

// printBanner tells the person who started the server where it is and
// how to authenticate.
func printBanner(w io.Writer, cfg *config, version, addr string) {
	url := "http://" + addr
	fmt.Fprintf(w, "workerscope %s serving %s (page: %s/metrics)\n", version, url, url)
	if cfg.TokenSource == "generated" {
		fmt.Fprintf(w, "token (generated, shown once): %s\n", cfg.Token)
		fmt.Fprintf(w, "try: curl -H 'Authorization: Bearer %s' %s/api/workers\n", cfg.Token, url)
	} else {
		fmt.Fprintf(w, "token from %s\n", cfg.TokenSource)
	}
}

func workerLabel(cfg *config) string {
	if cfg.DemoWorker {
		return "demo worker"
	}
	return fmt.Sprintf("%q", cfg.Worker.Command)
}

// shutdown stops, in order: new requests and event streams, the HTTP
// server, the workers (within their stop grace), then the last export and
// profile upload, so the workers' exits are in the last export. Budget:
// the stop grace plus a few seconds.
func shutdown(cfg *config, log *slog.Logger, api *httpapi.Server, srv *http.Server, mgr *workers.Manager, tel *telemetryStack) {
	ctx, cancel := context.WithTimeout(context.Background(), max(mgr.Config().StopGrace, 0)+5*time.Second)
	defer cancel()
	api.Shutdown()
	httpCtx, cancelHTTP := context.WithTimeout(ctx, 2*time.Second)
	if err := srv.Shutdown(httpCtx); err != nil {
		_ = srv.Close()
	}
	cancelHTTP()
	if err := mgr.Close(ctx); err != nil {
		log.Warn("workers did not stop in time", "err", err)
	}
	telCtx, cancelTel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancelTel()
	if err := tel.shutdown(telCtx); err != nil {
		log.Warn("telemetry shutdown", "err", err)
	}
	log.Info("stopped")
}

// demoLoad sends light synthetic prompts to a few sessions so a fresh run
// shows live, varied workers.
func demoLoad(ctx context.Context, mgr *workers.Manager, log *slog.Logger) {
	sessions := []string{"demo-alice", "demo-bob", "demo-carol"}
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		key := sessions[i%len(sessions)]
		cmd := fmt.Sprintf(`{"type":"prompt","message":"demo load %d","cpu_ms":%d,"mem_mib":%d,"events":4}`,
			i, 50+rand.IntN(250), 8+rand.IntN(40))
		if i%7 == 3 {
			cmd = fmt.Sprintf(`{"type":"prompt","message":"with a helper","cpu_ms":100,"child_ms":3000,"child_cpu_ms":%d}`, 50+rand.IntN(100))
		}
		if i%3 == 1 { // an agent run: model calls with tokens and cost, tool calls burning CPU
			cmd = fmt.Sprintf(`{"type":"prompt","message":"agent","agent_events":true,"turns":%d,"cpu_ms":%d,"input_tokens":%d,"output_tokens":%d,"cost_usd":%.4f}`,
				1+rand.IntN(3), 100+rand.IntN(400), 500+rand.IntN(3000), 50+rand.IntN(400), 0.001+rand.Float64()/100)
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if _, err := mgr.Send(rctx, key, []byte(cmd)); err != nil && ctx.Err() == nil {
			log.Debug("demo prompt failed", "key", key, "err", err)
		}
		cancel()
	}
}
