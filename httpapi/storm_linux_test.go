//go:build linux

package httpapi_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/workerscope/workerscope/httpapi"
	"github.com/workerscope/workerscope/internal/testutil"
)

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestConnectionStormStillServes: with the open-file limit lowered, a
// storm of idle keep-alive connections (each sent one GET /healthz) must
// not take the server's descriptors: it closes idle connections first, so
// a real client is still served and a new session still spawns (issue 13,
// item 1: 20,000 idle connections exhausted the fds, new clients timed
// out and spawns failed with "pipe2: too many open files").
func TestConnectionStormStillServes(t *testing.T) {
	const storm, maxConns = 600, 150
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	// Room for the storm's client ends and the capped server ends, not for
	// both ends of every connection.
	limit := uint64(openFDs(t) + storm + maxConns + 150)
	if limit > old.Cur {
		t.Skipf("open-file limit %d below the %d this test needs", old.Cur, limit)
	}
	lowered := old
	lowered.Cur = limit
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lowered); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })

	m := newManager(t, nil)
	api, err := httpapi.New(httpapi.Options{Token: testToken, Manager: m, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var freed atomic.Int32
	srv, limiter := httpapi.NewHTTPServer(api.Handler(), ln, httpapi.ServerOptions{
		MaxConns: maxConns, Logger: testLogger(), FreeMemory: func() { freed.Add(1) },
	})
	if srv.IdleTimeout <= 0 || srv.ReadHeaderTimeout <= 0 {
		t.Errorf("IdleTimeout %s ReadHeaderTimeout %s, want both set", srv.IdleTimeout, srv.ReadHeaderTimeout)
	}
	go func() { _ = srv.Serve(limiter) }()
	t.Cleanup(func() {
		api.Shutdown()
		_ = srv.Close()
	})
	addr := ln.Addr().String()

	// The storm: connections that asked once and stay open, idle.
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			_ = c.Close()
		}
	})
	failed := 0
	for range storm {
		c, err := healthzConn(addr)
		if err != nil {
			failed++
			continue
		}
		conns = append(conns, c)
		if st := limiter.Stats(); st.Open > maxConns {
			t.Fatalf("%d connections open, cap %d", st.Open, maxConns)
		}
	}
	st := limiter.Stats()
	t.Logf("storm of %d: %d failed, limiter %+v, fds %d of %d", storm, failed, st, openFDs(t), limit)
	if failed > 0 {
		t.Errorf("%d storm connections were not served", failed)
	}
	if st.Evicted < storm-maxConns {
		t.Errorf("evicted %d idle connections, want ≥ %d", st.Evicted, storm-maxConns)
	}

	// A real client is served, and a new session spawns.
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/api/sessions/after-storm/rpc", strings.NewReader(`{"type":"get_state"}`))
	bearer(testToken)(req)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("rpc after the storm: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"success":true`) {
		t.Fatalf("rpc after the storm: %d %s", resp.StatusCode, body)
	}

	// The storm ends: the limiter gives the memory back.
	for _, c := range conns {
		_ = c.Close()
	}
	conns = nil
	client.CloseIdleConnections()
	testutil.Eventually(t, 10*time.Second, "the storm's connections closed and memory freed", func() bool {
		return limiter.Stats().Open < maxConns/8 && freed.Load() > 0
	})
}

// healthzConn opens a keep-alive connection to addr and sends one
// GET /healthz on it, leaving it open and idle.
func healthzConn(addr string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		c.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		c.Close()
		return nil, io.ErrUnexpectedEOF
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// TestSlowBodyIsCut: an authenticated client that sends its body slower
// than BodyTimeout gets 408 body_timeout and its connection closed, instead
// of holding a handler forever (issue 13, item 1).
func TestSlowBodyIsCut(t *testing.T) {
	e := newEnv(t, setup{opts: func(o *httpapi.Options) { o.BodyTimeout = 300 * time.Millisecond }})
	c, err := net.DialTimeout("tcp", e.ts.Listener.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, "POST /api/sessions/slow/rpc HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+testToken+
		"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"type\":"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), "body_timeout") {
		t.Fatalf("stalled body: %d %s, want 408 body_timeout", resp.StatusCode, body)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Error("connection still open after the body timeout")
	}
	// A whole body is read as before, and the deadline does not outlive it:
	// a command longer than BodyTimeout still gets its answer.
	if r, reply := e.rpc("slow", `{"type":"sleep","ms":800}`); r.status != http.StatusOK || reply["success"] != true {
		t.Fatalf("rpc after: %d %s", r.status, r.body)
	}
	if n := len(e.workers()); n != 1 {
		t.Errorf("%d workers, want 1 (the stalled request must not spawn)", n)
	}
}

func TestMaxConnsFor(t *testing.T) {
	for _, c := range []struct {
		nofile  uint64
		reserve int
		want    int
	}{
		{0, 640, httpapi.DefaultMaxConns},       // unknown limit
		{1024, 640, 384},                        // the reserve bites
		{4096, 640, 2048},                       // half the limit
		{1 << 20, 640, httpapi.DefaultMaxConns}, // capped
		{256, 640, httpapi.MinMaxConns},         // never below the minimum
		{65536, 128 + 12*64, httpapi.DefaultMaxConns},
	} {
		if got := httpapi.MaxConnsFor(c.nofile, c.reserve); got != c.want {
			t.Errorf("MaxConnsFor(%d, %d) = %d, want %d", c.nofile, c.reserve, got, c.want)
		}
	}
}
