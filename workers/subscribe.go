package workers

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// Subscription receives a session's events. C is closed when the
// subscription is closed or the manager shuts down. A subscriber that does
// not keep up loses events rather than slowing the worker: Dropped counts
// them.
type Subscription struct {
	// C delivers events in the order the worker printed them.
	C <-chan Event

	ch      chan Event
	s       *session
	m       *Manager
	dropped atomic.Uint64
	once    sync.Once
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
	if m.closed {
		return nil, ErrClosed
	}
	s := m.sessionLocked(key)
	ch := make(chan Event, buffer)
	sub := &Subscription{C: ch, ch: ch, s: s, m: m}
	s.subMu.Lock()
	s.subs[sub] = struct{}{}
	s.subMu.Unlock()
	m.subscribers.Add(1)
	return sub, nil
}

// Dropped is the number of events this subscriber lost by falling behind.
func (sub *Subscription) Dropped() uint64 { return sub.dropped.Load() }

// Close ends the subscription and closes C. It is idempotent.
func (sub *Subscription) Close() {
	sub.once.Do(func() {
		sub.s.subMu.Lock()
		delete(sub.s.subs, sub)
		close(sub.ch)
		sub.s.subMu.Unlock()
		sub.m.subscribers.Add(-1)
	})
}

// publish delivers ev to every subscriber without blocking.
func (s *session) publish(m *Manager, ev Event) {
	s.subMu.RLock()
	defer s.subMu.RUnlock()
	for sub := range s.subs {
		select {
		case sub.ch <- ev:
		default:
			sub.dropped.Add(1)
			m.dropped.Add(1)
		}
	}
}

func (s *session) closeSubs(m *Manager) {
	s.subMu.RLock()
	subs := make([]*Subscription, 0, len(s.subs))
	for sub := range s.subs {
		subs = append(subs, sub)
	}
	s.subMu.RUnlock()
	for _, sub := range subs {
		sub.Close()
	}
}

// describeByte shows a printable ASCII byte quoted ('/') and any other as
// hex (0x00, 0xC3): a byte of a multi-byte character printed as a
// character of its own would name one the client never sent.
func describeByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return fmt.Sprintf("%q", c)
	}
	return fmt.Sprintf("0x%02X", c)
}

// MaxKeyLen is the longest session key accepted.
const MaxKeyLen = 128

// ErrBadKey reports a session key outside the accepted alphabet or length.
var ErrBadKey = fmt.Errorf("workers: session key must be 1–%d characters of [A-Za-z0-9._-]", MaxKeyLen)

// ValidateKey checks a session key: 1–128 characters of [A-Za-z0-9._-].
func ValidateKey(key string) error {
	if len(key) == 0 || len(key) > MaxKeyLen {
		return fmt.Errorf("%w (got %d characters)", ErrBadKey, len(key))
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w (byte %d is %s)", ErrBadKey, i, describeByte(c))
		}
	}
	if key == "." || key == ".." {
		return fmt.Errorf("%w (%q is reserved)", ErrBadKey, key)
	}
	return nil
}
