package httpapi_test

import (
	"net/http"
	"runtime/pprof"
	"testing"

	"github.com/workerscope/workerscope/internal/proflabel"
)

// TestRoutesLabelProfiles: a route registered with Handle runs with the
// pprof label operation=<its pattern>, so CPU profiles split by route.
func TestRoutesLabelProfiles(t *testing.T) {
	e := newEnv(t, setup{})
	e.srv.Handle("GET /api/labelled/{x}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op, _ := pprof.Label(r.Context(), proflabel.Key)
		_, _ = w.Write([]byte(op))
	}))
	if r := e.do(http.MethodGet, "/api/labelled/abc", ""); r.status != http.StatusOK || string(r.body) != "GET /api/labelled/{x}" {
		t.Errorf("status %d, label %q; want operation=%q", r.status, r.body, "GET /api/labelled/{x}")
	}
}
