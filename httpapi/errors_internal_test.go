package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/workerscope/workerscope/workers"
)

func TestWriteManagerError(t *testing.T) {
	deadlineCtx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	exit := &workers.ExitError{WorkerID: "w1", Key: "k", Reason: workers.ExitCrashed, Status: "exit status 2", StderrTail: "the-tail"}
	cases := []struct {
		name       string
		err        error
		ctx        context.Context
		status     int
		code       string
		retryAfter string
		contains   string
	}{
		{"bad key", fmt.Errorf("%w (x)", workers.ErrBadKey), nil, 400, "bad_key", "", "[A-Za-z0-9._-]"},
		{"bad command", fmt.Errorf("%w: no type", workers.ErrBadCommand), nil, 400, "bad_command", "", "no type"},
		{"backoff", &workers.BackoffError{Key: "k", RetryAfter: 1500 * time.Millisecond, Last: exit}, nil, 503, "backoff", "2", "the-tail"},
		{"backoff short", &workers.BackoffError{Key: "k", RetryAfter: time.Millisecond}, nil, 503, "backoff", "1", ""},
		{"exit", fmt.Errorf("send: %w", exit), nil, 502, "worker_exit", "", "the-tail"},
		{"exit beats deadline", exit, deadlineCtx, 502, "worker_exit", "", "the-tail"},
		{"deadline", fmt.Errorf("waiting: %w", context.DeadlineExceeded), deadlineCtx, 504, "timeout", "", ""},
		{"write cut by deadline", fmt.Errorf("%w: %w", workers.ErrWriteFailed, os.ErrDeadlineExceeded), deadlineCtx, 504, "timeout", "", ""},
		{"write failed", fmt.Errorf("%w: broken pipe", workers.ErrWriteFailed), nil, 502, "write_failed", "", "broken pipe"},
		{"spawn", fmt.Errorf("%w: no such file", workers.ErrSpawn), nil, 502, "spawn_failed", "", "no such file"},
		{"pool full", fmt.Errorf("%w (2 of 2)", workers.ErrPoolFull), nil, 503, "pool_full", "1", ""},
		{"closed", workers.ErrClosed, nil, 503, "closed", "", ""},
		{"not found", fmt.Errorf("%w %q", workers.ErrNotFound, "k"), nil, 404, "not_found", "", ""},
		{"other", errors.New("mystery"), nil, 500, "internal", "", "mystery"},
	}
	s := &Server{log: slog.New(slog.DiscardHandler)}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := c.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			rec := httptest.NewRecorder()
			s.writeManagerError(rec, httptest.NewRequest(http.MethodPost, "/api/sessions/k/rpc", nil), ctx, "k", c.err)
			if rec.Code != c.status {
				t.Errorf("status %d, want %d", rec.Code, c.status)
			}
			if got := rec.Header().Get("Retry-After"); got != c.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, c.retryAfter)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			var body errorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			if body.Code != c.code || !strings.Contains(body.Error, c.contains) {
				t.Errorf("body %+v, want code %q containing %q", body, c.code, c.contains)
			}
		})
	}
}

func TestEventName(t *testing.T) {
	for in, want := range map[string]string{
		"agent_end": "agent_end", "": "message", "a\nb": "message", "a\rb": "message", "x\x00": "message",
	} {
		if got := eventName(in); got != want {
			t.Errorf("eventName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSSEEventCompactsData(t *testing.T) {
	var st sseStream
	st.event(workers.Event{Type: "message_update", Data: []byte("{\"type\":\"message_update\",\r\n \"x\": [1, 2]}")})
	if got, want := st.buf.String(), "event: message_update\ndata: {\"type\":\"message_update\",\"x\":[1,2]}\n\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
