package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/workerscope/workerscope/workers"
)

// maxBatch bounds how many queued events are written before one flush,
// and maxBatchBytes how many bytes: the batch leaves the subscription (and
// its byte accounting) when it is formatted, so it must stay small. A
// batch stops growing once it holds maxBatchBytes; one event larger than
// that is written alone.
const (
	maxBatch      = 64
	maxBatchBytes = 64 << 10
)

// keepBufBytes is the largest write buffer an idle stream keeps between
// flushes; a larger one (grown by a large event) is released, so a stream
// that once carried a big event does not hold its size while idle.
const keepBufBytes = 2 * maxBatchBytes

// events handles GET /api/sessions/{key}/events: the session's worker
// events as Server-Sent Events, across worker restarts, until the client
// goes away, the Server shuts down or the manager closes. It does not spawn
// a worker.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	key, ok := sessionKey(w, r)
	if !ok {
		return
	}
	select {
	case <-s.done:
		writeError(w, http.StatusServiceUnavailable, "shutting_down", "server is shutting down")
		return
	default:
	}
	sub, err := s.m.Subscribe(key, 0)
	if err != nil {
		s.writeManagerError(w, r, r.Context(), key, err)
		return
	}
	defer sub.Close()
	s.sseClients.Add(1)
	defer s.sseClients.Add(-1)

	// ctx ends with the client, or with Shutdown; either also cuts short a
	// write blocked on a client that stopped reading.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		select {
		case <-s.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	st := &sseStream{w: w, rc: http.NewResponseController(w)}
	deadlineSet := make(chan struct{})
	stopDeadline := context.AfterFunc(ctx, func() {
		defer close(deadlineSet)
		_ = st.rc.SetWriteDeadline(time.Now())
	})
	defer func() {
		if !stopDeadline() {
			<-deadlineSet
		}
		// Give the server a moment to end the response cleanly.
		_ = st.rc.SetWriteDeadline(time.Now().Add(time.Second))
	}()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	st.buf.WriteString(": connected\n\n")
	if err := st.flush(ctx); err != nil {
		s.log.Debug("event stream ended", "key", key, "err", err)
		return
	}

	tick := time.NewTicker(s.opts.HeartbeatInterval)
	defer tick.Stop()
	var reported uint64 // dropped events already announced
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			reported = st.dropped(sub, reported)
			st.buf.WriteString(": heartbeat\n\n")
		case ev, ok := <-sub.C:
			if !ok {
				return // manager closed
			}
			st.event(ev)
			st.batch(sub.C)
			reported = st.dropped(sub, reported)
		}
		if err := st.flush(ctx); err != nil {
			if ctx.Err() == nil {
				s.log.Debug("event stream ended", "key", key, "err", err)
			}
			return
		}
	}
}

// sseStream formats events into buf and writes them out with a deadline.
type sseStream struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	buf bytes.Buffer
}

// batch appends what else is queued, for the same flush: up to maxBatch
// events in all, and no more once the buffer holds maxBatchBytes (the rest
// stays queued, inside the subscriber's byte budget).
func (st *sseStream) batch(c <-chan workers.Event) {
	for range maxBatch - 1 {
		if st.buf.Len() >= maxBatchBytes {
			return
		}
		select {
		case ev, ok := <-c:
			if !ok {
				return
			}
			st.event(ev)
		default:
			return
		}
	}
}

// event appends one event. The data is the worker's JSON line compacted,
// so it is a single line whatever whitespace the worker used.
func (st *sseStream) event(ev workers.Event) {
	start := st.buf.Len()
	fmt.Fprintf(&st.buf, "event: %s\ndata: ", eventName(ev.Type))
	if err := json.Compact(&st.buf, ev.Data); err != nil {
		// Not expected: the manager only forwards JSON objects.
		st.buf.Truncate(start)
		return
	}
	st.buf.WriteString("\n\n")
}

// dropped appends an "event: dropped" when the subscription lost events
// since the last report, and returns the new total.
func (st *sseStream) dropped(sub *workers.Subscription, reported uint64) uint64 {
	total := sub.Dropped()
	if total > reported {
		fmt.Fprintf(&st.buf, "event: dropped\ndata: {\"count\":%d,\"total\":%d}\n\n", total-reported, total)
	}
	return total
}

// flush writes buf to the client and flushes it, bounded by
// sseWriteTimeout.
func (st *sseStream) flush(ctx context.Context) error {
	if st.buf.Len() == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := st.rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	_, err := st.w.Write(st.buf.Bytes())
	st.buf.Reset()
	if st.buf.Cap() > keepBufBytes {
		st.buf = bytes.Buffer{}
	}
	if err != nil {
		return err
	}
	return st.rc.Flush()
}

// eventName makes a worker-chosen type safe for an SSE "event:" field;
// an empty or multi-line type becomes the SSE default, "message".
func eventName(typ string) string {
	if typ == "" || strings.ContainsAny(typ, "\r\n\x00") {
		return "message"
	}
	return typ
}
