package httpapi_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
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
