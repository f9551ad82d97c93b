package httpapi_test

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/workerscope/workerscope/httpapi"
	"github.com/workerscope/workerscope/internal/testutil"
	"github.com/workerscope/workerscope/workers"
)

// TestRPCWriteCutByDeadlineIsTimeout: a command too big for the pipe of a
// worker that stopped reading stdin is cut short by the request's deadline.
// That is one cause and must always be one answer: 504 timeout, never 502
// write_failed (issue 13, item 4: the file's own write deadline used to
// fire before the context's, and the race decided the status).
func TestRPCWriteCutByDeadlineIsTimeout(t *testing.T) {
	e := newEnv(t, setup{})
	big := `{"type":"get_state","pad":"` + strings.Repeat("x", 900<<10) + `"}`
	for i := range 20 {
		key := fmt.Sprintf("stalled-%d", i)
		if r, reply := e.rpc(key, `{"type":"stall"}`); r.status != http.StatusOK || reply["success"] != true {
			t.Fatalf("stall: %d %s", r.status, r.body)
		}
		r := e.do(http.MethodPost, "/api/sessions/"+key+"/rpc?timeout=100ms", big)
		if r.status != http.StatusGatewayTimeout {
			t.Fatalf("attempt %d: status %d %s, want 504 timeout", i, r.status, r.body)
		}
		if msg, code := r.errBody(t); code != "timeout" {
			t.Fatalf("attempt %d: code %q (%s), want timeout", i, code, msg)
		}
	}
}

// TestRPCAmbiguousCommandsRefused: a body the worker might read differently
// from the supervisor is refused with 400 bad_command before any worker
// sees it (issue 13, item 5: {"type":"get_state","type":"crash"} was
// routed and counted as get_state while the worker ran crash).
func TestRPCAmbiguousCommandsRefused(t *testing.T) {
	e := newEnv(t, setup{})
	cases := []struct{ name, body, contains string }{
		{"duplicate type", `{"type":"get_state","type":"crash"}`, `duplicate key "type"`},
		{"escaped duplicate", `{"type":"get_state","\u0074ype":"crash"}`, `duplicate key "type"`},
		{"case-folded duplicate", `{"type":"get_state","Type":"crash"}`, "differ only in case"},
		{"nested duplicate", `{"type":"prompt","message":"hi","opts":{"x":1,"x":2}}`, `duplicate key "x"`},
		{"invalid UTF-8", "{\"type\":\"prompt\",\"message\":\"\xc3\"}", "invalid UTF-8"},
		{"trailing object", `{"type":"get_state"}{"type":"crash"}`, "after the object"},
		{"trailing garbage", "{\"type\":\"get_state\"}\n#", "invalid character"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(http.MethodPost, "/api/sessions/amb/rpc", c.body)
			if r.status != http.StatusBadRequest {
				t.Fatalf("status %d %s, want 400", r.status, r.body)
			}
			if msg, code := r.errBody(t); code != "bad_command" || !strings.Contains(msg, c.contains) {
				t.Errorf("error %q code %q, want bad_command containing %q", msg, code, c.contains)
			}
		})
	}
	if n := len(e.workers()); n != 0 {
		t.Errorf("%d workers spawned by refused commands", n)
	}
}

// TestPoolFullRetryAfter: a 503 pool_full tells the client when to retry,
// like the back-off 503 does (issue 13, item 6).
func TestPoolFullRetryAfter(t *testing.T) {
	e := newEnv(t, setup{cfg: func(c *workers.Config) { c.MaxWorkers = 1 }})
	done := make(chan response, 1)
	go func() { done <- e.do(http.MethodPost, "/api/sessions/busy/rpc", `{"type":"sleep","ms":1500}`) }()
	testutil.Eventually(t, 10*time.Second, "the busy worker's command in flight", func() bool {
		ws := e.m.Snapshot()
		return len(ws) == 1 && ws[0].Requests >= 1 && ws[0].State == workers.StateRunning
	})
	r := e.do(http.MethodPost, "/api/sessions/other/rpc", `{"type":"get_state"}`)
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("status %d %s, want 503", r.status, r.body)
	}
	if _, code := r.errBody(t); code != "pool_full" {
		t.Fatalf("code %q, want pool_full", code)
	}
	if got := r.header.Get("Retry-After"); got != strconv.Itoa(httpapi.PoolFullRetryAfter) {
		t.Errorf("Retry-After %q, want %d", got, httpapi.PoolFullRetryAfter)
	}
	if r := <-done; r.status != http.StatusOK {
		t.Errorf("busy command: %d %s", r.status, r.body)
	}
}

// TestBadKeyNamesBytesInHex: a non-ASCII byte of a refused key is shown as
// 0xC3, not as the character 'Ã' that byte would be on its own (issue 13,
// item 6).
func TestBadKeyNamesBytesInHex(t *testing.T) {
	e := newEnv(t, setup{})
	for path, want := range map[string]string{
		"/api/sessions/caf%C3%A9/rpc": "byte 3 is 0xC3",
		"/api/sessions/a%00b/rpc":     "byte 1 is 0x00",
		"/api/sessions/a%7Fb/rpc":     "byte 1 is 0x7F",
		"/api/sessions/a%20b/rpc":     "byte 1 is ' '",
	} {
		r := e.do(http.MethodPost, path, `{"type":"get_state"}`)
		msg, code := r.errBody(t)
		if r.status != http.StatusBadRequest || code != "bad_key" || !strings.Contains(msg, want) || strings.Contains(msg, "Ã") {
			t.Errorf("%s: %d %q %q, want 400 bad_key containing %q", path, r.status, code, msg, want)
		}
	}
}
