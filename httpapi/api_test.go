package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/workerscope/workerscope/internal/testutil"

	"github.com/workerscope/workerscope/httpapi"
	"github.com/workerscope/workerscope/workers"
)

func TestNewRejectsBadOptions(t *testing.T) {
	m := newManager(t, nil)
	for name, opts := range map[string]httpapi.Options{
		"empty token":      {Manager: m},
		"nil manager":      {Token: "x"},
		"negative body":    {Token: "x", Manager: m, MaxBodyBytes: -1},
		"negative timeout": {Token: "x", Manager: m, RPCTimeout: -time.Second},
	} {
		if _, err := httpapi.New(opts); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

func TestHealthzWithoutAuth(t *testing.T) {
	e := newEnv(t, setup{})
	r := e.do(http.MethodGet, "/healthz", "", noAuth)
	if r.status != http.StatusOK {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	var body map[string]string
	if err := json.Unmarshal(r.body, &body); err != nil || body["status"] != "ok" {
		t.Fatalf("body %q (%v)", r.body, err)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if v := r.header.Get("X-Content-Type-Options"); v != "nosniff" {
		t.Errorf("X-Content-Type-Options %q", v)
	}
}

func TestAuth(t *testing.T) {
	e := newEnv(t, setup{opts: func(o *httpapi.Options) { o.HeartbeatInterval = time.Hour }})
	e.srv.Handle("GET /api/extra", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	}))
	e.srv.HandleUnauthenticated("GET /extra-health", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	}))
	if r := e.do(http.MethodGet, "/extra-health", "", noAuth); r.status != http.StatusTeapot {
		t.Errorf("unauthenticated extra route: %d", r.status)
	}

	routes := []struct {
		method, path, body string
		ok                 int // status with a good token
	}{
		{http.MethodPost, "/api/sessions/auth/rpc", `{"type":"get_state"}`, http.StatusOK},
		{http.MethodGet, "/api/sessions/auth/events", "", http.StatusOK},
		{http.MethodGet, "/api/workers", "", http.StatusOK},
		{http.MethodGet, "/api/extra", "", http.StatusTeapot},
		{http.MethodDelete, "/api/sessions/auth", "", http.StatusNoContent}, // after the rpc spawned it
	}
	creds := []struct {
		name string
		a    auth
		ok   bool
	}{
		{"missing", noAuth, false},
		{"wrong bearer", bearer("wrong"), false},
		{"token prefix", bearer(testToken[:4]), false},
		{"token plus suffix", bearer(testToken + "x"), false},
		{"wrong basic password", basic("admin", "wrong"), false},
		{"token as basic user", basic(testToken, ""), false},
		{"other scheme", func(r *http.Request) { r.Header.Set("Authorization", "Token "+testToken) }, false},
		{"bearer", bearer(testToken), true},
		{"bearer lower-case scheme", func(r *http.Request) { r.Header.Set("Authorization", "bearer "+testToken) }, true},
		{"basic", basic("anyone", testToken), true},
		{"basic empty user", basic("", testToken), true},
	}
	for _, c := range creds {
		for _, rt := range routes {
			t.Run(c.name+" "+rt.method+" "+rt.path, func(t *testing.T) {
				if c.ok && rt.method == http.MethodGet && strings.HasSuffix(rt.path, "/events") {
					// A stream: check the status and hang up.
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					req, _ := http.NewRequestWithContext(ctx, rt.method, e.url+rt.path, nil)
					c.a(req)
					resp, err := e.ts.Client().Do(req)
					if err != nil {
						t.Fatal(err)
					}
					defer resp.Body.Close()
					if resp.StatusCode != rt.ok {
						t.Fatalf("status %d, want %d", resp.StatusCode, rt.ok)
					}
					return
				}
				r := e.do(rt.method, rt.path, rt.body, c.a)
				if !c.ok {
					if r.status != http.StatusUnauthorized {
						t.Fatalf("status %d %s, want 401", r.status, r.body)
					}
					if got := r.header.Get("WWW-Authenticate"); got != `Basic realm="workerscope", charset="UTF-8"` {
						t.Errorf("WWW-Authenticate %q", got)
					}
					if _, code := r.errBody(t); code != "unauthorized" {
						t.Errorf("code %q", code)
					}
					return
				}
				if r.status != rt.ok {
					t.Fatalf("status %d %s, want %d", r.status, r.body, rt.ok)
				}
			})
		}
	}
}

func TestCrossOriginPostRejected(t *testing.T) {
	e := newEnv(t, setup{})
	cross := func(r *http.Request) {
		bearer(testToken)(r)
		r.Header.Set("Sec-Fetch-Site", "cross-site")
	}
	r := e.do(http.MethodPost, "/api/sessions/csrf/rpc", `{"type":"get_state"}`, cross)
	if r.status != http.StatusForbidden {
		t.Fatalf("status %d %s, want 403", r.status, r.body)
	}
	if len(e.workers()) != 0 {
		t.Fatal("a cross-origin request spawned a worker")
	}
}

func TestRPCGetStateMatchesWorkers(t *testing.T) {
	e := newEnv(t, setup{})
	r, reply := e.rpc("alpha", `{"type":"get_state","id":"my-own-id-7"}`)
	if r.status != http.StatusOK {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	for k, want := range map[string]string{"Content-Type": "application/json", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"} {
		if got := r.header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if reply["type"] != "response" || reply["success"] != true || reply["id"] != "my-own-id-7" {
		t.Fatalf("reply %s", r.body)
	}
	data, _ := reply["data"].(map[string]any)
	pid, _ := data["pid"].(float64)
	if pid <= 0 {
		t.Fatalf("no pid in %s", r.body)
	}
	ws := e.workers()
	if len(ws) != 1 {
		t.Fatalf("workers %+v", ws)
	}
	w := ws[0]
	if w.Key != "alpha" || w.PID != int(pid) || w.ID == "" || w.Requests != 1 || w.Zombie || w.StartedAt.IsZero() || w.LastActive.IsZero() {
		t.Errorf("worker %+v, want key alpha pid %v", w, pid)
	}
	if w.State != string(workers.StateIdle) || w.IdleSeconds < 0 || w.IdleSeconds > 30 {
		t.Errorf("worker %+v: state/idle", w)
	}
	// idle_seconds is fractional, not whole seconds.
	time.Sleep(20 * time.Millisecond)
	if w2 := e.workers()[0]; w2.IdleSeconds == float64(int(w2.IdleSeconds)) {
		t.Errorf("idle_seconds %v looks truncated", w2.IdleSeconds)
	}

	// A worker's own success:false is still a 200 with its body.
	r, reply = e.rpc("alpha", `{"type":"no_such_command"}`)
	if r.status != http.StatusOK || reply["success"] != false || !strings.Contains(string(r.body), "Unknown command") {
		t.Fatalf("unknown command: %d %s", r.status, r.body)
	}
}

func TestRPCBadRequests(t *testing.T) {
	e := newEnv(t, setup{opts: func(o *httpapi.Options) { o.MaxBodyBytes = 1024 }})
	cases := []struct {
		name, path, body string
		status           int
		code, contains   string
	}{
		{"bad JSON", "/api/sessions/k/rpc", `{"type":`, 400, "bad_command", ""},
		{"empty body", "/api/sessions/k/rpc", ``, 400, "bad_command", ""},
		{"array", "/api/sessions/k/rpc", `[1,2]`, 400, "bad_command", ""},
		{"no type", "/api/sessions/k/rpc", `{"id":"x"}`, 400, "bad_command", "type"},
		{"numeric type", "/api/sessions/k/rpc", `{"type":3}`, 400, "bad_command", "type"},
		{"encoded slash key", "/api/sessions/a%2Fb/rpc", `{"type":"get_state"}`, 400, "bad_key", "[A-Za-z0-9._-]"},
		{"129-char key", "/api/sessions/" + strings.Repeat("k", 129) + "/rpc", `{"type":"get_state"}`, 400, "bad_key", "129 characters"},
		{"space in key", "/api/sessions/bad%20key/rpc", `{"type":"get_state"}`, 400, "bad_key", "1–128 characters"},
		{"NUL key", "/api/sessions/%00/rpc", `{"type":"get_state"}`, 400, "bad_key", "[A-Za-z0-9._-]"},
		{"bad key wins over bad body", "/api/sessions/a%2Fb/rpc", `nope`, 400, "bad_key", ""},
		{"oversize body", "/api/sessions/k/rpc", `{"type":"prompt","message":"` + strings.Repeat("x", 2048) + `"}`, 413, "body_too_large", "1024"},
		{"bad timeout", "/api/sessions/k/rpc?timeout=soon", `{"type":"get_state"}`, 400, "bad_timeout", "soon"},
		{"negative timeout", "/api/sessions/k/rpc?timeout=-1s", `{"type":"get_state"}`, 400, "bad_timeout", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(http.MethodPost, c.path, c.body)
			if r.status != c.status {
				t.Fatalf("status %d %s, want %d", r.status, r.body, c.status)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			msg, code := r.errBody(t)
			if code != c.code || !strings.Contains(msg, c.contains) {
				t.Errorf("error %q code %q, want code %q containing %q", msg, code, c.code, c.contains)
			}
		})
	}
	// Bad keys are rejected on the other session routes too.
	if r := e.do(http.MethodDelete, "/api/sessions/bad%20key", ""); r.status != 400 {
		t.Errorf("DELETE bad key: %d", r.status)
	}
	if r := e.do(http.MethodGet, "/api/sessions/bad%20key/events", ""); r.status != 400 {
		t.Errorf("events bad key: %d", r.status)
	}
	if n := len(e.workers()); n != 0 {
		t.Errorf("%d workers spawned by bad requests", n)
	}
}

func TestRPCWorkerCrash(t *testing.T) {
	e := newEnv(t, setup{})
	if r, _ := e.rpc("crashy", `{"type":"get_state"}`); r.status != http.StatusOK {
		t.Fatalf("spawn: %d %s", r.status, r.body)
	}
	var wg sync.WaitGroup
	var sleepResp response
	wg.Add(1)
	go func() {
		defer wg.Done()
		sleepResp, _ = e.rpc("crashy", `{"type":"sleep","ms":5000}`)
	}()
	testutil.Eventually(t, 5*time.Second, "the sleep command to be in flight", func() bool {
		ws := e.m.Snapshot()
		return len(ws) == 1 && ws[0].Requests >= 2
	})
	start := time.Now()
	crashResp, _ := e.rpc("crashy", `{"type":"crash","message":"boom-marker"}`)
	wg.Wait()
	if time.Since(start) > 4*time.Second {
		t.Errorf("pending sleep was not failed promptly: %s", time.Since(start))
	}
	for name, r := range map[string]response{"crash": crashResp, "sleep": sleepResp} {
		if r.status != http.StatusBadGateway {
			t.Errorf("%s: status %d %s, want 502", name, r.status, r.body)
			continue
		}
		msg, code := r.errBody(t)
		if code != "worker_exit" || !strings.Contains(msg, "boom-marker") {
			t.Errorf("%s: error %q code %q, want worker_exit with the stderr tail", name, msg, code)
		}
	}
	// The session respawns on the next command.
	if r, reply := e.rpc("crashy", `{"type":"get_state"}`); r.status != http.StatusOK || reply["success"] != true {
		t.Fatalf("after crash: %d %s", r.status, r.body)
	}
	if ws := e.workers(); len(ws) != 1 || ws[0].Restarts != 1 {
		t.Errorf("workers after respawn: %+v", ws)
	}
}

func TestRPCTimeout(t *testing.T) {
	e := newEnv(t, setup{})
	if r, _ := e.rpc("slow", `{"type":"get_state"}`); r.status != http.StatusOK {
		t.Fatalf("spawn: %d %s", r.status, r.body)
	}
	start := time.Now()
	r := e.do(http.MethodPost, "/api/sessions/slow/rpc?timeout=200ms", `{"type":"sleep","ms":3000}`)
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("took %s", el)
	}
	if r.status != http.StatusGatewayTimeout {
		t.Fatalf("status %d %s, want 504", r.status, r.body)
	}
	if _, code := r.errBody(t); code != "timeout" {
		t.Errorf("code %q", code)
	}
	// The server-wide cap applies too.
	e2 := newEnv(t, setup{opts: func(o *httpapi.Options) { o.RPCTimeout = 200 * time.Millisecond }})
	if r := e2.do(http.MethodPost, "/api/sessions/slow/rpc?timeout=1h", `{"type":"sleep","ms":3000}`); r.status != http.StatusGatewayTimeout {
		t.Fatalf("capped: status %d %s, want 504", r.status, r.body)
	}
}

func TestDeleteSession(t *testing.T) {
	e := newEnv(t, setup{})
	if r, _ := e.rpc("gone", `{"type":"get_state"}`); r.status != http.StatusOK {
		t.Fatalf("spawn: %d %s", r.status, r.body)
	}
	pid := e.workers()[0].PID
	if r := e.do(http.MethodDelete, "/api/sessions/gone", ""); r.status != http.StatusNoContent || len(r.body) != 0 {
		t.Fatalf("DELETE: %d %s", r.status, r.body)
	}
	if ws := e.workers(); len(ws) != 0 {
		t.Fatalf("workers after DELETE: %+v", ws)
	}
	if err := processGone(pid); err != nil {
		t.Error(err)
	}
	r := e.do(http.MethodDelete, "/api/sessions/gone", "")
	if r.status != http.StatusNotFound {
		t.Fatalf("second DELETE: %d %s", r.status, r.body)
	}
	if _, code := r.errBody(t); code != "not_found" {
		t.Errorf("code %q", code)
	}
}

func TestManagerClosed(t *testing.T) {
	e := newEnv(t, setup{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	r, _ := e.rpc("late", `{"type":"get_state"}`)
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("status %d %s, want 503", r.status, r.body)
	}
	if _, code := r.errBody(t); code != "closed" {
		t.Errorf("code %q", code)
	}
	if r := e.do(http.MethodGet, "/api/sessions/late/events", ""); r.status != http.StatusServiceUnavailable {
		t.Errorf("events after close: %d %s", r.status, r.body)
	}
}

// TestCrossSiteBackgroundLoadsRejected: another site's page cannot make the
// operator's browser load API routes with its cached Basic credentials,
// while a top-level navigation (a link) still works.
func TestCrossSiteBackgroundLoadsRejected(t *testing.T) {
	e := newEnv(t, setup{})
	tests := []struct {
		site, mode string
		want       int
	}{
		{"cross-site", "no-cors", http.StatusForbidden},
		{"cross-site", "cors", http.StatusForbidden},
		{"cross-site", "navigate", http.StatusOK},
		{"same-origin", "cors", http.StatusOK},
		{"", "", http.StatusOK}, // curl, scripts
	}
	for _, tt := range tests {
		req, _ := http.NewRequest("GET", e.url+"/api/workers", nil)
		req.SetBasicAuth("op", testToken)
		if tt.site != "" {
			req.Header.Set("Sec-Fetch-Site", tt.site)
			req.Header.Set("Sec-Fetch-Mode", tt.mode)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("Sec-Fetch-Site %q Mode %q: %d, want %d", tt.site, tt.mode, resp.StatusCode, tt.want)
		}
	}
}

// TestReadyz: 503 "starting" until SetReady, 200 then, 503 "shutting_down"
// from Drain on while sessions and event streams are still served, and
// after Shutdown; no token needed, like /healthz.
func TestReadyz(t *testing.T) {
	e := newEnv(t, setup{})
	status := func() (int, string) {
		resp, err := http.Get(e.url + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct{ Status string }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body.Status
	}
	if code, st := status(); code != http.StatusServiceUnavailable || st != "starting" {
		t.Fatalf("before SetReady: %d %q", code, st)
	}
	e.srv.SetReady()
	if code, st := status(); code != http.StatusOK || st != "ready" {
		t.Fatalf("ready: %d %q", code, st)
	}
	open := e.openEvents("draining", nil)
	e.srv.Drain()
	if code, st := status(); code != http.StatusServiceUnavailable || st != "shutting_down" {
		t.Fatalf("draining: %d %q", code, st)
	}
	// Draining still serves: an RPC (spawning a worker), a new event
	// stream, and the one open before, which sees the new worker start.
	if r, _ := e.rpc("draining", `{"type":"get_state"}`); r.status != http.StatusOK {
		t.Fatalf("rpc while draining: %d %s", r.status, r.body)
	}
	late := e.openEvents("draining", nil)
	defer late.close()
	if f := open.next(t, 5*time.Second); f.err != nil {
		t.Fatalf("stream opened before Drain ended: %v", f.err)
	}
	e.srv.Shutdown()
	if code, st := status(); code != http.StatusServiceUnavailable || st != "shutting_down" {
		t.Fatalf("after Shutdown: %d %q", code, st)
	}
	for f := open.next(t, 5*time.Second); f.err == nil; f = open.next(t, 5*time.Second) {
		// frames sent before Shutdown, then the end of the stream
	}
}
