package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/workerscope/workerscope/workers/workerstest"

	"github.com/workerscope/workerscope/httpapi"
	"github.com/workerscope/workerscope/workers"
	"github.com/workerscope/workerscope/workers/demoworker"
)

// TestMain lets the test binary double as the demo worker.
func TestMain(m *testing.M) { demoworker.TestMain(m) }

const testToken = "s3cret-token"

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// env is one API server on 127.0.0.1 over a real Manager running the demo
// worker from the test binary.
type env struct {
	t   *testing.T
	m   *workers.Manager
	srv *httpapi.Server
	ts  *httptest.Server
	url string
}

type setup struct {
	cfg      func(*workers.Config)
	opts     func(*httpapi.Options)
	listener func(net.Listener) net.Listener
}

func newManager(t *testing.T, mod func(*workers.Config)) *workers.Manager {
	t.Helper()
	return workerstest.NewDemoManager(t, func(c *workers.Config) { c.Logger = testLogger() }, mod)
}

func newEnv(t *testing.T, su setup) *env {
	t.Helper()
	m := newManager(t, su.cfg)
	opts := httpapi.Options{Token: testToken, Manager: m, Logger: testLogger(), Version: "test"}
	if su.opts != nil {
		su.opts(&opts)
	}
	srv, err := httpapi.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(srv.Handler())
	if su.listener != nil {
		ts.Listener = su.listener(ts.Listener)
	}
	ts.Start()
	t.Cleanup(func() {
		srv.Shutdown() // end event streams, or ts.Close waits for them
		ts.Close()
	})
	return &env{t: t, m: m, srv: srv, ts: ts, url: ts.URL}
}

type auth func(*http.Request)

func bearer(tok string) auth {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}

func basic(user, pass string) auth {
	return func(r *http.Request) { r.SetBasicAuth(user, pass) }
}

func noAuth(*http.Request) {}

type response struct {
	status int
	header http.Header
	body   []byte
}

// errBody decodes an error response's JSON body.
func (r response) errBody(t *testing.T) (msg, code string) {
	t.Helper()
	var e struct{ Error, Code string }
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("error body %q: %v", r.body, err)
	}
	return e.Error, e.Code
}

// do sends one request with the test token unless a is given.
func (e *env) do(method, path, body string, a ...auth) response {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if len(a) == 0 {
		a = []auth{bearer(testToken)}
	}
	for _, f := range a {
		f(req)
	}
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// rpc sends one command to key and decodes the reply when it is a 200.
func (e *env) rpc(key, cmd string) (response, map[string]any) {
	e.t.Helper()
	r := e.do(http.MethodPost, "/api/sessions/"+key+"/rpc", cmd)
	if r.status != http.StatusOK {
		return r, nil
	}
	var obj map[string]any
	if err := json.Unmarshal(r.body, &obj); err != nil {
		e.t.Fatalf("rpc reply %q: %v", r.body, err)
	}
	return r, obj
}

type workerEntry struct {
	ID          string    `json:"id"`
	Key         string    `json:"key"`
	PID         int       `json:"pid"`
	State       string    `json:"state"`
	StartedAt   time.Time `json:"started_at"`
	LastActive  time.Time `json:"last_active"`
	IdleSeconds float64   `json:"idle_seconds"`
	Requests    uint64    `json:"requests"`
	Restarts    int       `json:"restarts"`
	Zombie      bool      `json:"zombie"`
}

func (e *env) workers() []workerEntry {
	e.t.Helper()
	r := e.do(http.MethodGet, "/api/workers", "")
	if r.status != http.StatusOK {
		e.t.Fatalf("GET /api/workers: %d %s", r.status, r.body)
	}
	var out struct {
		Workers []workerEntry `json:"workers"`
	}
	if err := json.Unmarshal(r.body, &out); err != nil {
		e.t.Fatalf("GET /api/workers %q: %v", r.body, err)
	}
	return out.Workers
}

// frame is one SSE frame: a comment or an event.
type frame struct {
	comment string
	event   string
	data    string
	err     error // the stream ended
}

// stream is an open SSE response read by a goroutine into frames.
type stream struct {
	resp   *http.Response
	frames chan frame
	cancel context.CancelFunc
}

// openEvents opens GET /api/sessions/{key}/events with client (nil: the
// test server's) and waits for the ": connected" comment.
func (e *env) openEvents(key string, client *http.Client) *stream {
	e.t.Helper()
	if client == nil {
		client = e.ts.Client()
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.url+"/api/sessions/"+key+"/events", nil)
	if err != nil {
		e.t.Fatal(err)
	}
	bearer(testToken)(req)
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		e.t.Fatal(err)
	}
	s := &stream{resp: resp, frames: make(chan frame), cancel: cancel}
	e.t.Cleanup(s.close)
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		e.t.Fatalf("events: %d %s", resp.StatusCode, b)
	}
	for k, want := range map[string]string{
		"Content-Type": "text/event-stream", "Cache-Control": "no-store",
		"X-Accel-Buffering": "no", "X-Content-Type-Options": "nosniff",
	} {
		if got := resp.Header.Get(k); got != want {
			e.t.Errorf("events header %s = %q, want %q", k, got, want)
		}
	}
	go s.read(ctx)
	f := s.next(e.t, 5*time.Second)
	if f.comment != "connected" {
		e.t.Fatalf("first frame %+v, want comment connected", f)
	}
	return s
}

func (s *stream) read(ctx context.Context) {
	br := bufio.NewReader(s.resp.Body)
	var f frame
	send := func(f frame) bool {
		select {
		case s.frames <- f:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			send(frame{err: err})
			return
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if !send(f) {
				return
			}
			f = frame{}
		case strings.HasPrefix(line, ":"):
			f.comment = strings.TrimSpace(line[1:])
		case strings.HasPrefix(line, "event: "):
			f.event = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			if f.data != "" {
				send(frame{err: errors.New("multi-line data: " + line)})
				return
			}
			f.data = line[len("data: "):]
		default:
			send(frame{err: errors.New("unexpected line: " + line)})
			return
		}
	}
}

// next returns the next frame, failing the test after d.
func (s *stream) next(t *testing.T, d time.Duration) frame {
	t.Helper()
	select {
	case f := <-s.frames:
		return f
	case <-time.After(d):
		t.Fatalf("no SSE frame within %s", d)
		return frame{}
	}
}

func (s *stream) close() {
	s.cancel()
	_ = s.resp.Body.Close()
}

// processGone reports an error unless pid no longer exists.
func processGone(pid int) error {
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("pid %d still exists (kill 0: %v)", pid, err)
	}
	return nil
}
