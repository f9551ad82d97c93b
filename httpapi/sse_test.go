package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/workerscope/workerscope/internal/testutil"

	"github.com/workerscope/workerscope/httpapi"
	"github.com/workerscope/workerscope/workers"
)

func TestSSEPromptEvents(t *testing.T) {
	e := newEnv(t, setup{})
	s := e.openEvents("chat", nil)
	if n := e.srv.SSEClients(); n != 1 {
		t.Errorf("SSEClients = %d, want 1", n)
	}
	r, reply := e.rpc("chat", `{"type":"prompt","message":"hi","cpu_ms":50,"events":3}`)
	if r.status != http.StatusOK || reply["success"] != true {
		t.Fatalf("prompt: %d %s", r.status, r.body)
	}
	var got []string
	for len(got) == 0 || got[len(got)-1] != "agent_end" {
		f := s.next(t, 10*time.Second)
		if f.err != nil {
			t.Fatalf("stream ended: %v (events so far %v)", f.err, got)
		}
		if f.comment != "" {
			continue
		}
		var obj struct{ Type string }
		if err := json.Unmarshal([]byte(f.data), &obj); err != nil {
			t.Fatalf("event %q data %q: %v", f.event, f.data, err)
		}
		if obj.Type != f.event {
			t.Errorf("event %q carries type %q", f.event, obj.Type)
		}
		if f.event == "message_update" && !strings.Contains(f.data, "hi (") {
			t.Errorf("message_update data %s", f.data)
		}
		got = append(got, f.event)
	}
	want := []string{"worker_start", "agent_start", "message_update", "message_update", "message_update", "agent_end"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("events %v, want %v", got, want)
	}

	// Hanging up unsubscribes and uncounts the client.
	s.close()
	testutil.Eventually(t, 5*time.Second, "SSE client count back to 0", func() bool {
		return e.srv.SSEClients() == 0 && e.m.Stats().Subscribers == 0
	})
}

func TestSSEHeartbeat(t *testing.T) {
	e := newEnv(t, setup{opts: func(o *httpapi.Options) { o.HeartbeatInterval = 50 * time.Millisecond }})
	s := e.openEvents("beat", nil)
	for range 2 {
		if f := s.next(t, 2*time.Second); f.comment != "heartbeat" {
			t.Fatalf("frame %+v, want a heartbeat", f)
		}
	}
}

// smallBuffers shrinks the kernel socket buffers of accepted connections,
// so a client that stops reading blocks the server's writes quickly.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4096)
	}
	return c, err
}

func TestSSESlowClientDoesNotBlockWorker(t *testing.T) {
	e := newEnv(t, setup{
		cfg:      func(c *workers.Config) { c.EventBuffer = 8 },
		opts:     func(o *httpapi.Options) { o.HeartbeatInterval = 100 * time.Millisecond },
		listener: func(l net.Listener) net.Listener { return smallBuffers{l} },
	})
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetReadBuffer(4096)
			}
			return c, err
		},
		ReadBufferSize: 4096,
	}
	t.Cleanup(tr.CloseIdleConnections)
	s := e.openEvents("flood", &http.Client{Transport: tr})
	// From here on nobody reads the stream until the worker is done.
	msg := strings.Repeat("m", 200)
	if r, reply := e.rpc("flood", `{"type":"prompt","message":"`+msg+`","events":3000}`); r.status != http.StatusOK || reply["success"] != true {
		t.Fatalf("prompt: %d %s", r.status, r.body)
	}
	start := time.Now()
	for {
		rstart := time.Now()
		r, reply := e.rpc("flood", `{"type":"get_state"}`)
		if r.status != http.StatusOK {
			t.Fatalf("get_state while the client is stuck: %d %s", r.status, r.body)
		}
		if d := time.Since(rstart); d > 2*time.Second {
			t.Fatalf("get_state took %s while the client is stuck", d)
		}
		if data, _ := reply["data"].(map[string]any); data["streaming"] == false {
			break
		}
		if time.Since(start) > 20*time.Second {
			t.Fatal("prompt never finished")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if e.m.Stats().EventsDropped == 0 {
		t.Fatal("no events dropped: the test did not stall the client")
	}
	// Reading again, the client learns how many events it lost.
	deadline := time.Now().Add(10 * time.Second)
	for {
		f := s.next(t, 10*time.Second)
		if f.err != nil {
			t.Fatalf("stream ended before a dropped event: %v", f.err)
		}
		if f.event == "dropped" {
			var d struct{ Count, Total uint64 }
			if err := json.Unmarshal([]byte(f.data), &d); err != nil || d.Count == 0 || d.Total < d.Count {
				t.Fatalf("dropped data %q (%v)", f.data, err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no dropped event")
		}
	}
}

func TestShutdownEndsSSE(t *testing.T) {
	e := newEnv(t, setup{opts: func(o *httpapi.Options) { o.HeartbeatInterval = time.Hour }})
	s := e.openEvents("bye", nil)
	if n := e.srv.SSEClients(); n != 1 {
		t.Fatalf("SSEClients = %d", n)
	}
	e.srv.Shutdown()
	f := s.next(t, 3*time.Second)
	if f.err == nil {
		t.Fatalf("frame %+v after Shutdown, want the stream to end", f)
	}
	if f.err != io.EOF {
		t.Logf("stream ended with %v", f.err)
	}
	testutil.Eventually(t, 3*time.Second, "SSE client count back to 0", func() bool { return e.srv.SSEClients() == 0 })
	if r := e.do(http.MethodGet, "/api/sessions/bye/events", ""); r.status != http.StatusServiceUnavailable {
		t.Errorf("events after Shutdown: %d %s", r.status, r.body)
	}
	// An http.Server shuts down gracefully now that no stream holds it.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := e.ts.Config.Shutdown(ctx); err != nil {
		t.Errorf("http.Server.Shutdown: %v", err)
	}
}

func TestSSEEndsWhenManagerCloses(t *testing.T) {
	e := newEnv(t, setup{opts: func(o *httpapi.Options) { o.HeartbeatInterval = time.Hour }})
	s := e.openEvents("closing", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if f := s.next(t, 3*time.Second); f.err == nil {
		t.Fatalf("frame %+v after the manager closed, want the stream to end", f)
	}
}
