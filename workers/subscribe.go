package workers

import (
	"github.com/workerscope/workerscope/workers/internal/fanout"
)

// Subscription receives a session's events. C is closed when the
// subscription is closed or the manager shuts down. A subscriber that does
// not keep up loses events rather than slowing the worker: Dropped counts
// them. Its buffer is bounded in events (Config.EventBuffer) and in bytes
// of event data (Config.SubscriberBufferBytes), and all subscribers'
// buffers together by Config.SubscriberBytesBudget.
type Subscription struct {
	// C delivers events in the order the worker printed them.
	C <-chan Event

	sub *fanout.Sub[Event]
}

// Subscribe subscribes to the events of the session key, across worker
// restarts. It does not spawn a worker. buffer ≤ 0 uses Config.EventBuffer.
func (m *Manager) Subscribe(key string, buffer int) (*Subscription, error) {
	if err := ValidateKey(key); err != nil {
		return nil, err
	}
	if buffer <= 0 {
		buffer = m.cfg.EventBuffer
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pool.closed {
		return nil, ErrClosed
	}
	sub := m.sessionLocked(key).events.Subscribe(buffer)
	return &Subscription{C: sub.C(), sub: sub}, nil
}

// Dropped is the number of events this subscriber lost by falling behind.
func (sub *Subscription) Dropped() uint64 { return sub.sub.Dropped() }

// BufferedBytes is the event data sent to this subscriber and not yet
// received from C.
func (sub *Subscription) BufferedBytes() int64 { return sub.sub.BufferedBytes() }

// Close ends the subscription and closes C. It is idempotent.
func (sub *Subscription) Close() { sub.sub.Close() }

// publish delivers ev to every subscriber of the session without
// blocking (fanout.Topic.Publish).
func (s *session) publish(ev Event) { s.events.Publish(ev, len(ev.Data)) }
