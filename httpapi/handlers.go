package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/workerscope/workerscope/workers"
)

// PoolFullRetryAfter is the Retry-After, in seconds, of a 503 pool_full:
// every worker was busy, and commands usually finish within seconds.
const PoolFullRetryAfter = 1

// errorBody is the JSON body of every error response.
type errorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":"cannot encode response","code":"internal"}`)
	}
	writeRawJSON(w, status, b)
}

func writeRawJSON(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, errorBody{Error: msg, Code: code})
}

// healthz is liveness: the process serves HTTP.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz is readiness: 200 once SetReady was called, 503 before and from
// Drain on (a load balancer then stops sending new sessions here while the
// open ones are still served, then the workers are stopped).
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "shutting_down"})
		return
	}
	if !s.ready.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "starting"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// sessionKey returns the validated {key} path value, or writes a 400 naming
// the rule.
func sessionKey(w http.ResponseWriter, r *http.Request) (string, bool) {
	key := r.PathValue("key")
	if err := workers.ValidateKey(key); err != nil {
		writeError(w, http.StatusBadRequest, "bad_key", err.Error())
		return "", false
	}
	return key, true
}

// requestContext derives the context of an RPC or stop: the request's,
// capped by RPCTimeout and, when shorter, by the ?timeout= query parameter.
func (s *Server) requestContext(w http.ResponseWriter, r *http.Request) (context.Context, context.CancelFunc, bool) {
	timeout := s.opts.RPCTimeout
	if v := r.URL.Query().Get("timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, "bad_timeout", fmt.Sprintf("timeout must be a positive duration such as 30s or 500ms, got %q", v))
			return nil, nil, false
		}
		timeout = min(timeout, d)
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	return ctx, cancel, true
}

// readBody reads the request body, at most MaxBodyBytes of it, within
// BodyTimeout. The deadline is the connection's, so it is lifted once the
// body is in: the rest of the request (up to RPCTimeout) is not bound by
// it.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	rc := http.NewResponseController(w)
	deadlineSet := rc.SetReadDeadline(time.Now().Add(s.opts.BodyTimeout)) == nil
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes))
	if deadlineSet && err == nil {
		_ = rc.SetReadDeadline(time.Time{})
	}
	return body, err
}

// rpc handles POST /api/sessions/{key}/rpc: one command in, the worker's
// response out, verbatim, with 200 even when it says success:false.
func (s *Server) rpc(w http.ResponseWriter, r *http.Request) {
	key, ok := sessionKey(w, r)
	if !ok {
		return
	}
	body, err := s.readBody(w, r)
	if err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			writeError(w, http.StatusRequestEntityTooLarge, "body_too_large",
				fmt.Sprintf("request body exceeds the %d-byte limit", tooBig.Limit))
		case errors.Is(err, os.ErrDeadlineExceeded):
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusRequestTimeout, "body_timeout",
				fmt.Sprintf("request body not received within %s", s.opts.BodyTimeout))
		default:
			writeError(w, http.StatusBadRequest, "bad_body", "reading request body: "+err.Error())
		}
		return
	}
	ctx, cancel, ok := s.requestContext(w, r)
	if !ok {
		return
	}
	defer cancel()
	resp, err := s.m.Send(ctx, key, body)
	if err != nil {
		s.writeManagerError(w, r, ctx, key, err)
		return
	}
	writeRawJSON(w, http.StatusOK, resp)
}

// stop handles DELETE /api/sessions/{key}.
func (s *Server) stop(w http.ResponseWriter, r *http.Request) {
	key, ok := sessionKey(w, r)
	if !ok {
		return
	}
	ctx, cancel, ok := s.requestContext(w, r)
	if !ok {
		return
	}
	defer cancel()
	if err := s.m.Stop(ctx, key); err != nil {
		s.writeManagerError(w, r, ctx, key, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// writeManagerError maps a workers error to a status and code.
func (s *Server) writeManagerError(w http.ResponseWriter, r *http.Request, ctx context.Context, key string, err error) {
	code := workers.ErrorCode(ctx, err)
	status := http.StatusInternalServerError
	switch code {
	case workers.CodeBadKey, workers.CodeBadCommand:
		status = http.StatusBadRequest
	case workers.CodeBackoff:
		status = http.StatusServiceUnavailable
		var backoff *workers.BackoffError
		if errors.As(err, &backoff) {
			w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(backoff.RetryAfter)))
		}
	case workers.CodeWorkerExit, workers.CodeSpawnFailed, workers.CodeWriteFailed:
		status = http.StatusBadGateway
	case workers.CodeTimeout:
		status = http.StatusGatewayTimeout
	case workers.CodeCanceled:
		// The client went away; nobody reads this.
		s.log.Debug("request canceled by client", "method", r.Method, "path", r.URL.Path, "key", key, "err", err)
		status = 499
	case workers.CodePoolFull:
		// Every worker is busy: one may be free soon.
		status = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", strconv.Itoa(PoolFullRetryAfter))
	case workers.CodeClosed:
		status = http.StatusServiceUnavailable
	case workers.CodeNotFound:
		status = http.StatusNotFound
	case workers.CodeBudgetExceeded:
		// The session is past its token or spend budget until it is reset
		// (DELETE /api/sessions/{key}): no Retry-After, waiting does not help.
		status = http.StatusTooManyRequests
	default:
		code = "internal"
	}
	switch {
	case status >= 500:
		s.log.Warn("request failed", "method", r.Method, "path", r.URL.Path, "key", key, "status", status, "code", code, "err", err)
	case status != 499:
		s.log.Debug("request rejected", "method", r.Method, "path", r.URL.Path, "key", key, "status", status, "code", code, "err", err)
	}
	writeError(w, status, code, err.Error())
}

// retryAfterSeconds rounds d up to whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

// snapshotJSON is one entry of GET /api/workers (the supervisor's view,
// no usage; the usage report is telemetry/report's).
type snapshotJSON struct {
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
	// UID is the uid the worker's tree runs as (--worker-uids); absent
	// when it runs as the supervisor's. Sandboxed: started under Landlock.
	UID       *int `json:"uid,omitempty"`
	Sandboxed bool `json:"sandboxed"`
}

type snapshotsJSON struct {
	Version string         `json:"version,omitempty"`
	Workers []snapshotJSON `json:"workers"`
}

// workers handles GET /api/workers: the manager's snapshot, no sampling.
func (s *Server) workers(w http.ResponseWriter, r *http.Request) {
	snap := s.m.Snapshot()
	out := snapshotsJSON{Version: s.opts.Version, Workers: make([]snapshotJSON, len(snap))}
	for i, ws := range snap {
		out.Workers[i] = snapshotJSON{
			ID:          ws.ID,
			Key:         ws.Key,
			PID:         ws.PID,
			State:       string(ws.State),
			StartedAt:   ws.StartedAt.UTC(),
			LastActive:  ws.LastActive.UTC(),
			IdleSeconds: ws.Idle.Seconds(),
			Requests:    ws.Requests,
			Restarts:    ws.Restarts,
			Zombie:      ws.Zombie,
			Sandboxed:   ws.Sandboxed,
		}
		if ws.UID > 0 {
			uid := ws.UID
			out.Workers[i].UID = &uid
		}
	}
	writeJSON(w, http.StatusOK, out)
}
