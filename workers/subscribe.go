package workers

import (
	"fmt"
	"sync"
	"sync/atomic"
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

	ch      chan Event
	s       *session
	m       *Manager
	dropped atomic.Uint64
	once    sync.Once

	// acct guards the byte accounting: the sizes of the events sent into
	// ch and not yet known to be received, oldest first. ch is FIFO and
	// only publish (under acct) sends, so when len(ch) is below the count
	// of sizes, the oldest ones were received.
	acct   sync.Mutex
	sizes  []int
	head   int   // sizes[:head] are received
	bytes  int64 // sum of sizes[head:]
	closed bool
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
	m.subsMu.Lock()
	m.allSubs[sub] = struct{}{}
	m.subsMu.Unlock()
	m.subscribers.Add(1)
	return sub, nil
}

// Dropped is the number of events this subscriber lost by falling behind.
func (sub *Subscription) Dropped() uint64 { return sub.dropped.Load() }

// BufferedBytes is the event data sent to this subscriber and not yet
// received from C.
func (sub *Subscription) BufferedBytes() int64 {
	sub.acct.Lock()
	defer sub.acct.Unlock()
	sub.reconcileLocked()
	return sub.bytes
}

// Close ends the subscription and closes C. It is idempotent.
func (sub *Subscription) Close() {
	sub.once.Do(func() {
		sub.s.subMu.Lock()
		delete(sub.s.subs, sub)
		close(sub.ch)
		sub.s.subMu.Unlock()
		sub.m.subsMu.Lock()
		delete(sub.m.allSubs, sub)
		sub.m.subsMu.Unlock()
		sub.acct.Lock()
		sub.closed = true
		sub.m.subBytes.Add(-sub.bytes) // no longer this manager's to bound
		sub.bytes, sub.sizes, sub.head = 0, nil, 0
		sub.acct.Unlock()
		sub.m.subscribers.Add(-1)
	})
}

// reconcileLocked forgets the sizes of the events received since the last
// call. The caller holds sub.acct.
func (sub *Subscription) reconcileLocked() {
	if sub.closed {
		return
	}
	queued := len(sub.ch) // may fall meanwhile: then fewer are forgotten now
	var freed int64
	for len(sub.sizes)-sub.head > queued {
		freed += int64(sub.sizes[sub.head])
		sub.head++
	}
	if freed > 0 {
		sub.bytes -= freed
		sub.m.subBytes.Add(-freed)
	}
	if sub.head > 64 && sub.head*2 > len(sub.sizes) {
		n := copy(sub.sizes, sub.sizes[sub.head:])
		sub.sizes = sub.sizes[:n]
		sub.head = 0
	}
}

// offer sends ev to sub without blocking if it fits the subscriber's event
// and byte buffers and the manager's budget, and reports whether it did.
func (sub *Subscription) offer(m *Manager, ev Event) bool {
	size := len(ev.Data)
	sub.acct.Lock()
	defer sub.acct.Unlock()
	if sub.closed {
		return true // being closed: not a subscriber that fell behind
	}
	sub.reconcileLocked()
	if sub.bytes+int64(size) > m.cfg.SubscriberBufferBytes {
		return false
	}
	if !m.reserveSubBytes(size) {
		// Other subscribers may have read events they are still charged
		// for: settle them (without holding this one) and try again.
		sub.acct.Unlock()
		m.reconcileSubs()
		sub.acct.Lock()
		if sub.closed {
			return true
		}
		if !m.reserveSubBytes(size) {
			return false
		}
	}
	select {
	case sub.ch <- ev:
		sub.sizes = append(sub.sizes, size)
		sub.bytes += int64(size)
		return true
	default:
		m.subBytes.Add(-int64(size))
		return false
	}
}

// reserveSubBytes charges n bytes to the subscribers' budget if they fit.
func (m *Manager) reserveSubBytes(n int) bool {
	for {
		cur := m.subBytes.Load()
		if cur+int64(n) > m.cfg.SubscriberBytesBudget {
			return false
		}
		if m.subBytes.CompareAndSwap(cur, cur+int64(n)) {
			return true
		}
	}
}

// reconcileSubs settles the byte accounting of every subscription and
// returns the bytes buffered for all of them.
func (m *Manager) reconcileSubs() int64 {
	m.subsMu.Lock()
	subs := make([]*Subscription, 0, len(m.allSubs))
	for sub := range m.allSubs {
		subs = append(subs, sub)
	}
	m.subsMu.Unlock()
	for _, sub := range subs {
		sub.acct.Lock()
		sub.reconcileLocked()
		sub.acct.Unlock()
	}
	return m.subBytes.Load()
}

// publish delivers ev to every subscriber without blocking; one whose
// buffer is full, in events or bytes, or for whom the budget of all
// subscribers has no room, loses it (counted).
func (s *session) publish(m *Manager, ev Event) {
	s.subMu.RLock()
	defer s.subMu.RUnlock()
	for sub := range s.subs {
		if !sub.offer(m, ev) {
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
