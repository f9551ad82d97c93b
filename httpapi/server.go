package httpapi

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"net/http"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/workerscope/workerscope/internal/proflabel"
	"github.com/workerscope/workerscope/workers"
)

// Defaults for zero Options fields.
const (
	defaultMaxBodyBytes      = 1 << 20
	defaultHeartbeatInterval = 15 * time.Second
	defaultRPCTimeout        = 5 * time.Minute
	defaultBodyTimeout       = 30 * time.Second
)

// sseWriteTimeout bounds one write (and flush) to an SSE client, so a
// client that stopped reading ends its stream instead of holding its
// handler forever.
const sseWriteTimeout = 10 * time.Second

// Options configures a Server. Zero values take the documented defaults.
type Options struct {
	// Token is the shared secret every authenticated route requires.
	// Required.
	Token string
	// Manager is the worker pool the API drives. Required.
	Manager *workers.Manager
	// Logger receives request errors. Default slog.Default().
	Logger *slog.Logger
	// MaxBodyBytes bounds a request body. Default 1 MiB.
	MaxBodyBytes int64
	// HeartbeatInterval is how often an SSE stream sends a ": heartbeat"
	// comment, keeping proxies from closing an idle stream. Default 15s.
	HeartbeatInterval time.Duration
	// RPCTimeout caps the time one RPC (or stop) may take. A client may ask
	// for less with the query parameter ?timeout=30s. Default 5m.
	RPCTimeout time.Duration
	// BodyTimeout bounds reading an RPC's request body: a client that
	// sends it slower gets 408 body_timeout and its connection is closed.
	// Default 30s.
	BodyTimeout time.Duration
	// Version is the application version, reported in GET /api/workers.
	Version string
}

// Server serves the HTTP API. Create it with New.
type Server struct {
	opts    Options
	log     *slog.Logger
	m       *workers.Manager
	mux     *http.ServeMux
	handler http.Handler
	// tokenHash is SHA-256 of the configured token: comparing fixed-size
	// digests in constant time does not leak the token's length.
	tokenHash [sha256.Size]byte
	csrf      *http.CrossOriginProtection

	sseClients   atomic.Int64
	ready        atomic.Bool   // SetReady: the pool and the telemetry are up
	draining     atomic.Bool   // Drain: readiness off for good, still serving
	done         chan struct{} // closed by Shutdown
	shutdownOnce sync.Once
}

// New validates opts and builds a Server with the built-in routes
// registered.
func New(opts Options) (*Server, error) {
	var errs []error
	if opts.Token == "" {
		errs = append(errs, errors.New("httpapi: Token is empty"))
	}
	if opts.Manager == nil {
		errs = append(errs, errors.New("httpapi: Manager is nil"))
	}
	if opts.MaxBodyBytes < 0 {
		errs = append(errs, errors.New("httpapi: MaxBodyBytes must be ≥ 0"))
	}
	if opts.HeartbeatInterval < 0 {
		errs = append(errs, errors.New("httpapi: HeartbeatInterval must be ≥ 0"))
	}
	if opts.RPCTimeout < 0 {
		errs = append(errs, errors.New("httpapi: RPCTimeout must be ≥ 0"))
	}
	if opts.BodyTimeout < 0 {
		errs = append(errs, errors.New("httpapi: BodyTimeout must be ≥ 0"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxBodyBytes == 0 {
		opts.MaxBodyBytes = defaultMaxBodyBytes
	}
	if opts.HeartbeatInterval == 0 {
		opts.HeartbeatInterval = defaultHeartbeatInterval
	}
	if opts.RPCTimeout == 0 {
		opts.RPCTimeout = defaultRPCTimeout
	}
	if opts.BodyTimeout == 0 {
		opts.BodyTimeout = defaultBodyTimeout
	}
	s := &Server{
		opts:      opts,
		log:       opts.Logger,
		m:         opts.Manager,
		mux:       http.NewServeMux(),
		tokenHash: sha256.Sum256([]byte(opts.Token)),
		csrf:      http.NewCrossOriginProtection(),
		done:      make(chan struct{}),
	}
	s.csrf.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusForbidden, "cross_origin", "cross-origin request rejected")
	}))
	s.handler = commonHeaders(s.mux)

	s.HandleUnauthenticated("GET /healthz", http.HandlerFunc(s.healthz))
	s.HandleUnauthenticated("GET /readyz", http.HandlerFunc(s.readyz))
	s.Handle("POST /api/sessions/{key}/rpc", http.HandlerFunc(s.rpc))
	s.Handle("GET /api/sessions/{key}/events", http.HandlerFunc(s.events))
	s.Handle("DELETE /api/sessions/{key}", http.HandlerFunc(s.stop))
	s.Handle("GET /api/workers", http.HandlerFunc(s.workers))
	return s, nil
}

// Handler returns the root handler: the Server's own mux wrapped with the
// headers every response carries.
func (s *Server) Handler() http.Handler { return s.handler }

// Handle registers h for pattern (http.ServeMux syntax, e.g.
// "GET /api/metrics" or "/api/debug/pprof/") behind the token check and
// cross-origin protection. Like http.ServeMux.Handle it panics on a
// conflicting pattern. It may be called while serving.
func (s *Server) Handle(pattern string, h http.Handler) {
	s.mux.Handle(pattern, labelled(pattern, s.authenticate(s.csrf.Handler(s.noCrossSiteLoads(h)))))
}

// labelled runs h with the pprof label operation=pattern (internal/proflabel),
// the route pattern h is registered under, so profiles split by route.
func labelled(pattern string, h http.Handler) http.Handler {
	labels := pprof.Labels(proflabel.Key, pattern)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pprof.Do(r.Context(), labels, func(ctx context.Context) { h.ServeHTTP(w, r.WithContext(ctx)) })
	})
}

// noCrossSiteLoads rejects requests another site's page makes in the
// background with the operator's cached Basic credentials (an <img> or
// fetch of /api/debug/pprof/profile?seconds=600, an EventSource): browsers
// mark them Sec-Fetch-Site: cross-site. Top-level navigations (a link to
// the page) stay allowed; CrossOriginProtection already covers unsafe
// methods.
func (s *Server) noCrossSiteLoads(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Sec-Fetch-Site") == "cross-site" && r.Header.Get("Sec-Fetch-Mode") != "navigate" {
			writeError(w, http.StatusForbidden, "cross_origin", "cross-site request rejected")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// HandleUnauthenticated registers h for pattern without the token check.
// Use it only for health-like routes that reveal nothing.
func (s *Server) HandleUnauthenticated(pattern string, h http.Handler) {
	s.mux.Handle(pattern, h)
}

// SSEClients returns the number of open event streams.
func (s *Server) SSEClients() int64 { return s.sseClients.Load() }

// SetReady marks the server ready for traffic (GET /readyz answers 200)
// once whatever it depends on is up; Drain and Shutdown end readiness for
// good.
func (s *Server) SetReady() { s.ready.Store(true) }

// Drain begins a graceful shutdown: GET /readyz answers 503
// shutting_down from now on, so a load balancer stops sending new
// sessions here, while every route (RPCs, new and open event streams)
// keeps being served until Shutdown. It is idempotent.
func (s *Server) Drain() { s.draining.Store(true) }

// Shutdown ends every open event stream promptly and makes new ones fail
// with 503; it implies Drain. Call it before (or together with) http.Server.Shutdown, which
// waits for streaming handlers but does not end them. It does not cut short
// RPCs in flight. It is idempotent.
func (s *Server) Shutdown() {
	s.Drain()
	s.shutdownOnce.Do(func() { close(s.done) })
}

// commonHeaders sets the headers every response carries, including the
// mux's own 404 and 405 replies.
func commonHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}
