package httpapi

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/workerscope/workerscope/workers"
)

// TestSSEBatchBoundedInBytes: the events a stream takes off its
// subscription to write in one flush leave the subscriber's byte
// accounting, so the batch must be bounded in bytes, and a buffer grown by
// large events must not stay with an idle stream. (Found by `make soak`:
// 100 clients, idle after a burst of 128 KiB events with a 1 MiB
// per-subscriber buffer, kept 143 MB of live heap: each stream had batched
// up to 64 events and kept the grown buffer.)
func TestSSEBatchBoundedInBytes(t *testing.T) {
	const size, queued = 128 << 10, 64
	c := make(chan workers.Event, queued)
	data := []byte(`{"type":"message_update","junk":"` + strings.Repeat("x", size) + `"}`)
	for range queued {
		c <- workers.Event{Type: "message_update", Data: data}
	}
	rec := httptest.NewRecorder()
	st := &sseStream{w: rec, rc: http.NewResponseController(rec)}
	st.event(<-c)
	st.batch(c)
	if n := st.buf.Len(); n > maxBatchBytes+2*len(data) {
		t.Fatalf("one batch holds %d bytes (%d events), want at most %d + one event", n, bytes.Count(st.buf.Bytes(), []byte("event: ")), maxBatchBytes)
	}
	if len(c) < queued-2 {
		t.Fatalf("%d of %d events taken off the subscription for one flush", queued-len(c), queued)
	}
	if err := st.flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if cp := st.buf.Cap(); cp > keepBufBytes {
		t.Fatalf("after the flush the idle stream keeps a %d-byte buffer, want ≤ %d", cp, keepBufBytes)
	}

	// Small events still go out many to a flush.
	for len(c) > 0 {
		<-c
	}
	small := []byte(`{"type":"message_update"}`)
	for range queued {
		c <- workers.Event{Type: "message_update", Data: small}
	}
	st.buf.Reset()
	st.event(<-c)
	st.batch(c)
	if got := bytes.Count(st.buf.Bytes(), []byte("event: ")); got < 32 {
		t.Fatalf("a batch of small events has %d events, want many", got)
	}
}
