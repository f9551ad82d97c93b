package httpapi

import (
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of ServerOptions (the zero values).
const (
	defaultIdleTimeout       = 60 * time.Second
	defaultReadHeaderTimeout = 10 * time.Second
	// DefaultMaxConns is the connection cap when the fd limit is unknown
	// or large: each open connection costs tens of kilobytes.
	DefaultMaxConns = 4096
	// MinMaxConns is the smallest connection cap MaxConnsFor derives.
	MinMaxConns = 16
)

// ServerOptions configures NewHTTPServer. Zero values take the defaults.
type ServerOptions struct {
	// MaxConns caps the open connections. When a new one would pass it,
	// the longest-idle keep-alive connection is closed, else the oldest
	// one that has not sent a request for a second, else the new one.
	// Default DefaultMaxConns; see MaxConnsFor.
	MaxConns int
	// IdleTimeout closes keep-alive connections idle this long. Default 60s.
	IdleTimeout time.Duration
	// ReadHeaderTimeout bounds reading a request's headers. Default 10s.
	ReadHeaderTimeout time.Duration
	// Logger receives the server's own errors. Default slog.Default().
	Logger *slog.Logger
	// FreeMemory is called once a connection storm is over (connections
	// fell from at least half the cap to under an eighth of it), to give
	// the memory of its connections back to the OS. Default
	// debug.FreeOSMemory.
	FreeMemory func()
}

// MaxConnsFor derives a connection cap from the process's open-file limit
// nofile, keeping reserve descriptors for everything else (worker pipes,
// the collector, files): at most half the limit, at most
// DefaultMaxConns, at least MinMaxConns.
func MaxConnsFor(nofile uint64, reserve int) int {
	if nofile == 0 {
		return DefaultMaxConns
	}
	n := min(nofile/2, uint64(DefaultMaxConns))
	if r := uint64(max(reserve, 0)); nofile > r {
		n = min(n, nofile-r)
	} else {
		n = 0
	}
	return max(int(n), MinMaxConns)
}

// NewHTTPServer returns an http.Server for h that protects itself: idle
// and header timeouts, and ln wrapped so that at most o.MaxConns
// connections are open at once (see ServerOptions.MaxConns). Serve it on
// the returned listener.
func NewHTTPServer(h http.Handler, ln net.Listener, o ServerOptions) (*http.Server, *ConnLimiter) {
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = defaultIdleTimeout
	}
	if o.ReadHeaderTimeout <= 0 {
		o.ReadHeaderTimeout = defaultReadHeaderTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.FreeMemory == nil {
		o.FreeMemory = debug.FreeOSMemory
	}
	l := &ConnLimiter{Listener: ln, max: o.MaxConns, conns: make(map[net.Conn]*connInfo), free: o.FreeMemory}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: o.ReadHeaderTimeout,
		IdleTimeout:       o.IdleTimeout,
		ConnState:         l.ConnState,
		ErrorLog:          slog.NewLogLogger(o.Logger.Handler(), slog.LevelWarn),
	}
	return srv, l
}

// ConnLimiter is a listener that caps the open connections of the
// http.Server whose ConnState hook it is. Create it with NewHTTPServer.
type ConnLimiter struct {
	net.Listener
	max  int
	free func()

	mu      sync.Mutex
	conns   map[net.Conn]*connInfo
	peak    int  // most open since the last storm ended
	freeing bool // a FreeMemory call is running

	evicted, rejected atomic.Uint64
}

type connInfo struct {
	state http.ConnState
	since time.Time
}

// ConnStats are a ConnLimiter's counts.
type ConnStats struct {
	Open, Max int
	// Evicted counts idle (or silent new) connections closed to make
	// room; Rejected new connections closed at once because every open
	// one was busy.
	Evicted, Rejected uint64
}

// Stats returns the limiter's counts.
func (l *ConnLimiter) Stats() ConnStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return ConnStats{Open: len(l.conns), Max: l.max, Evicted: l.evicted.Load(), Rejected: l.rejected.Load()}
}

// silentNew is how long a new connection may go without a request before
// it may be closed to make room.
const silentNew = time.Second

// Accept accepts the next connection, first closing one to make room when
// the cap is reached: the longest-idle keep-alive connection, else the
// oldest new one that has sent nothing for a second. When every open
// connection is busy the new one is closed instead and Accept waits for
// the next.
func (l *ConnLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		now := time.Now()
		l.mu.Lock()
		var victim net.Conn
		if len(l.conns) >= l.max {
			victim = l.victimLocked(now)
			if victim == nil {
				l.mu.Unlock()
				l.rejected.Add(1)
				_ = c.Close()
				continue
			}
			delete(l.conns, victim)
			l.evicted.Add(1)
		}
		l.conns[c] = &connInfo{state: http.StateNew, since: now}
		l.peak = max(l.peak, len(l.conns))
		l.mu.Unlock()
		if victim != nil {
			_ = victim.Close()
		}
		return c, nil
	}
}

// victimLocked picks the connection to close to make room, or nil.
func (l *ConnLimiter) victimLocked(now time.Time) net.Conn {
	var idle, silent net.Conn
	var idleSince, silentSince time.Time
	for c, ci := range l.conns {
		switch {
		case ci.state == http.StateIdle && (idle == nil || ci.since.Before(idleSince)):
			idle, idleSince = c, ci.since
		case ci.state == http.StateNew && now.Sub(ci.since) >= silentNew && (silent == nil || ci.since.Before(silentSince)):
			silent, silentSince = c, ci.since
		}
	}
	if idle != nil {
		return idle
	}
	return silent
}

// ConnState is the http.Server's ConnState hook.
func (l *ConnLimiter) ConnState(c net.Conn, st http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch st {
	case http.StateClosed, http.StateHijacked:
		delete(l.conns, c)
		l.maybeFreeLocked()
	default:
		if ci, ok := l.conns[c]; ok {
			ci.state, ci.since = st, time.Now()
		}
	}
}

// maybeFreeLocked gives memory back once a storm of connections is over.
func (l *ConnLimiter) maybeFreeLocked() {
	if l.peak < max(l.max/2, 2) || len(l.conns) >= l.max/8 || l.freeing {
		return
	}
	l.peak = len(l.conns)
	l.freeing = true
	go func() {
		l.free()
		l.mu.Lock()
		l.freeing = false
		l.mu.Unlock()
	}()
}
