// Command workerscope supervises JSON-lines RPC workers (such as
// `pi --mode rpc`) and shows what each one costs.
//
//	workerscope [serve] [flags]   run the supervisor and its HTTP API (default)
//	workerscope demo-worker       run the built-in demo worker on stdio
//	workerscope version           print the version
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
	"sync/atomic"
	"syscall"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/workerscope/workerscope/httpapi"
	"github.com/workerscope/workerscope/telemetry"
	"github.com/workerscope/workerscope/telemetry/webui"
	"github.com/workerscope/workerscope/workers"
	"github.com/workerscope/workerscope/workers/demoworker"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = ""

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if getenv(demoworker.RoleEnv) != "" {
		return demoworker.Main()
	}
	cmd := "serve"
	if len(args) > 0 && !isFlag(args[0]) {
		cmd, args = args[0], args[1:]
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

func newLogger(cfg *config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serve runs until SIGINT or SIGTERM, then shuts down within the stop grace
// plus a few seconds.
func serve(cfg *config, stdout, stderr io.Writer) error {
	started := time.Now()
	log := newLogger(cfg, stderr)
	slog.SetDefault(log)

	rpcHook := &telemetry.RPCHook{}
	// Profiling starts after telemetry (it takes the service name and
	// instance id from the resource); the upload-error counter reads it
	// once it exists.
	var profiler atomic.Pointer[telemetry.Profiler]
	wcfg := workers.Config{
		OnRPC:        rpcHook.OnRPC,
		Command:      cfg.WorkerCmd,
		IdleTTL:      cfg.IdleTTL,
		MaxWorkers:   cfg.MaxWorkers,
		StopGrace:    cfg.StopGrace,
		MaxLineBytes: cfg.MaxLineBytes,
		Logger:       log.With("component", "workers"),
	}
	if cfg.IdleTTL == 0 {
		wcfg.IdleTTL = -1 // 0 on the command line means never
	}
	if cfg.StopGrace == 0 {
		wcfg.StopGrace = -1 // 0 on the command line means SIGKILL at once
	}
	// Workers must not see the supervisor's secrets or its telemetry
	// settings (an OTel-instrumented worker would report as workerscope).
	wcfg.EnvDrop = []string{"WORKERSCOPE_", "OTEL_", "PYROSCOPE_"}
	if cfg.DemoWorker {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("locate own binary for the demo worker: %w", err)
		}
		wcfg.Command = []string{exe, "demo-worker"}
	}
	mgr, err := workers.New(wcfg)
	if err != nil {
		return err
	}

	api, err := httpapi.New(httpapi.Options{
		Token:   cfg.Token,
		Manager: mgr,
		Logger:  log.With("component", "http"),
		Version: buildVersion(),
	})
	if err != nil {
		return err
	}
	promReader, promHandler, err := telemetry.NewPrometheusReader()
	if err != nil {
		_ = mgr.Close(context.Background())
		return err
	}
	tel, err := telemetry.Start(context.Background(), telemetry.Options{
		Readers:       []sdkmetric.Reader{promReader},
		Supervisor:    mgr,
		Version:       buildVersion(),
		Getenv:        cfg.Getenv,
		Logger:        log.With("component", "telemetry"),
		DropWorkerKey: cfg.DropWorkerKey,
		SSEClients:    api.SSEClients,
		RPC:           rpcHook,
		Started:       started,

		ProfilingUploadErrors: func() uint64 { return profiler.Load().UploadErrors() },
	})
	if err != nil {
		_ = mgr.Close(context.Background())
		return err
	}
	mountTelemetry(api, tel, promHandler, started)

	appName := "workerscope"
	if res := tel.Provider.Resource; res != nil {
		if v, ok := res.Set().Value("service.name"); ok {
			appName = v.AsString()
		}
	}
	prof, err := telemetry.StartProfiling(telemetry.ProfilingOptions{
		Getenv:                 cfg.Getenv,
		ServerAddress:          cfg.PyroscopeServer,
		ApplicationName:        cfg.PyroscopeApp,
		DefaultApplicationName: appName,
		Version:                buildVersion(),
		InstanceID:             tel.Provider.InstanceID,
		Logger:                 log.With("component", "profiling"),
	})
	if err != nil {
		_ = tel.Shutdown(context.Background())
		_ = mgr.Close(context.Background())
		return err
	}
	profiler.Store(prof)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		_ = prof.Stop(context.Background())
		_ = mgr.Close(context.Background())
		return fmt.Errorf("listen on %s (--listen / WORKERSCOPE_LISTEN): %w", cfg.Listen, err)
	}
	srv := &http.Server{
		Handler:           api.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	url := "http://" + ln.Addr().String()
	fmt.Fprintf(stdout, "workerscope %s serving %s (page: %s/metrics)\n", buildVersion(), url, url)
	if cfg.TokenSource == "generated" {
		fmt.Fprintf(stdout, "token (generated, shown once): %s\n", cfg.Token)
		fmt.Fprintf(stdout, "try: curl -H 'Authorization: Bearer %s' %s/api/workers\n", cfg.Token, url)
	} else {
		fmt.Fprintf(stdout, "token from %s\n", cfg.TokenSource)
	}
	worker := "demo worker"
	if !cfg.DemoWorker {
		worker = fmt.Sprintf("%q", cfg.WorkerCmd)
	}
	log.Info("started", "listen", ln.Addr().String(), "worker", worker, "idle_ttl", cfg.IdleTTL,
		"max_workers", cfg.MaxWorkers, "stop_grace", cfg.StopGrace, "demo_load", cfg.DemoLoad,
		"otlp_endpoint", tel.Provider.Endpoint, "service_instance_id", tel.Provider.InstanceID)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	if cfg.DemoLoad {
		go demoLoad(ctx, mgr, log.With("component", "demo-load"))
	}

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "signal", context.Cause(ctx))
	case err := <-serveErr:
		runErr = fmt.Errorf("http server: %w", err)
	}
	stop()

	// Budget: the workers' stop grace plus a few seconds for everything else.
	shutCtx, cancel := context.WithTimeout(context.Background(), cfg.StopGrace+5*time.Second)
	defer cancel()
	api.Shutdown()
	httpCtx, cancelHTTP := context.WithTimeout(shutCtx, 2*time.Second)
	if err := srv.Shutdown(httpCtx); err != nil {
		_ = srv.Close()
	}
	cancelHTTP()
	if err := mgr.Close(shutCtx); err != nil {
		log.Warn("workers did not stop in time", "err", err)
	}
	// The last export goes out after the workers stopped, so their exits
	// are in it; it and the last profile upload share a bounded wait.
	telCtx, cancelTel := context.WithTimeout(context.Background(), 3*time.Second)
	profErr := make(chan error, 1)
	go func() { profErr <- prof.Stop(telCtx) }()
	if err := tel.Shutdown(telCtx); err != nil {
		log.Warn("telemetry shutdown", "err", err)
	}
	if err := <-profErr; err != nil {
		log.Warn("profiling shutdown", "err", err)
	}
	cancelTel()
	log.Info("stopped")
	return runErr
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
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if _, err := mgr.Send(rctx, key, []byte(cmd)); err != nil && ctx.Err() == nil {
			log.Debug("demo prompt failed", "key", key, "err", err)
		}
		cancel()
	}
}

// mountTelemetry registers the telemetry routes on the API's mux, behind
// its authentication.
func mountTelemetry(api *httpapi.Server, tel *telemetry.Telemetry, prom http.Handler, started time.Time) {
	api.Handle("GET /api/metrics", telemetry.ReportHandler(telemetry.ReportHandlerOptions{
		Sampler:    tel.Sampler,
		SSEClients: api.SSEClients,
		Version:    buildVersion(),
		Started:    started,
	}))
	api.Handle("/api/debug/pprof/", telemetry.PprofHandler())
	api.Handle("GET /metrics", telemetry.NegotiateMetrics(metricsPage(), prom))
}

// metricsPage is the HTML side of GET /metrics.
func metricsPage() http.Handler {
	return webui.Handler()
}
