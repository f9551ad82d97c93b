// Package fanout delivers a stream of events to many subscribers without
// ever blocking the publisher: a subscriber that falls behind loses events
// (counted) instead. Each subscription's buffer is bounded in events and
// in bytes, and all the subscriptions of a Hub together by a byte budget.
//
// It imports only the standard library and knows nothing of workers.
package fanout

import (
	"sync"
	"sync/atomic"
)

// Hub holds the byte budget shared by its topics' subscriptions and
// their counters.
//
// Lock order: a Topic's lock, then the Hub's, then a Sub's; Publish holds
// the topic's (read) lock and a Sub's, never the Hub's with a Sub's.
type Hub[E any] struct {
	perSub, budget int64

	bytes       atomic.Int64 // buffered for all subscriptions (Sub.bytes summed)
	subscribers atomic.Int64
	dropped     atomic.Uint64

	mu  sync.Mutex
	all map[*Sub[E]]struct{}
}

// NewHub bounds each subscription's buffered event data to perSub bytes
// and all subscriptions' together to budget bytes.
func NewHub[E any](perSub, budget int64) *Hub[E] {
	return &Hub[E]{perSub: perSub, budget: budget, all: make(map[*Sub[E]]struct{})}
}

// Subscribers is the number of open subscriptions.
func (h *Hub[E]) Subscribers() int { return int(h.subscribers.Load()) }

// Dropped counts the events subscribers lost by falling behind.
func (h *Hub[E]) Dropped() uint64 { return h.dropped.Load() }

// Bytes settles the byte accounting of every subscription and returns
// the bytes buffered for all of them.
func (h *Hub[E]) Bytes() int64 {
	h.mu.Lock()
	subs := make([]*Sub[E], 0, len(h.all))
	for sub := range h.all {
		subs = append(subs, sub)
	}
	h.mu.Unlock()
	for _, sub := range subs {
		sub.acct.Lock()
		sub.reconcileLocked()
		sub.acct.Unlock()
	}
	return h.bytes.Load()
}

// reserve charges n bytes to the budget if they fit.
func (h *Hub[E]) reserve(n int) bool {
	for {
		cur := h.bytes.Load()
		if cur+int64(n) > h.budget {
			return false
		}
		if h.bytes.CompareAndSwap(cur, cur+int64(n)) {
			return true
		}
	}
}

// Topic is one stream's subscriptions (a session's).
type Topic[E any] struct {
	hub  *Hub[E]
	mu   sync.RWMutex
	subs map[*Sub[E]]struct{}
}

// NewTopic is an empty topic of h.
func NewTopic[E any](h *Hub[E]) *Topic[E] {
	return &Topic[E]{hub: h, subs: make(map[*Sub[E]]struct{})}
}

// Len is the number of open subscriptions to t.
func (t *Topic[E]) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.subs)
}

// Subscribe opens a subscription to t with a buffer of buffer events.
func (t *Topic[E]) Subscribe(buffer int) *Sub[E] {
	ch := make(chan E, buffer)
	sub := &Sub[E]{ch: ch, t: t}
	t.mu.Lock()
	t.subs[sub] = struct{}{}
	t.mu.Unlock()
	h := t.hub
	h.mu.Lock()
	h.all[sub] = struct{}{}
	h.mu.Unlock()
	h.subscribers.Add(1)
	return sub
}

// Publish delivers e (of size bytes) to every subscriber without
// blocking; one whose buffer is full, in events or bytes, or for whom the
// budget of all subscribers has no room, loses it (counted).
func (t *Topic[E]) Publish(e E, size int) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for sub := range t.subs {
		if !sub.offer(e, size) {
			sub.dropped.Add(1)
			t.hub.dropped.Add(1)
		}
	}
}

// CloseAll closes every subscription to t.
func (t *Topic[E]) CloseAll() {
	t.mu.RLock()
	subs := make([]*Sub[E], 0, len(t.subs))
	for sub := range t.subs {
		subs = append(subs, sub)
	}
	t.mu.RUnlock()
	for _, sub := range subs {
		sub.Close()
	}
}

// Sub is one subscription.
type Sub[E any] struct {
	ch      chan E
	t       *Topic[E]
	dropped atomic.Uint64
	once    sync.Once

	// acct guards the byte accounting: the sizes of the events sent into
	// ch and not yet known to be received, oldest first. ch is FIFO and
	// only offer (under acct) sends, so when len(ch) is below the count
	// of sizes, the oldest ones were received.
	acct   sync.Mutex
	sizes  []int
	head   int   // sizes[:head] are received
	bytes  int64 // sum of sizes[head:]
	closed bool
}

// C delivers the events in the order they were published; it is closed
// by Close.
func (sub *Sub[E]) C() <-chan E { return sub.ch }

// Dropped is the number of events this subscriber lost by falling behind.
func (sub *Sub[E]) Dropped() uint64 { return sub.dropped.Load() }

// BufferedBytes is the event data sent to this subscriber and not yet
// received from C.
func (sub *Sub[E]) BufferedBytes() int64 {
	sub.acct.Lock()
	defer sub.acct.Unlock()
	sub.reconcileLocked()
	return sub.bytes
}

// Close ends the subscription and closes C. It is idempotent.
func (sub *Sub[E]) Close() {
	sub.once.Do(func() {
		t, h := sub.t, sub.t.hub
		t.mu.Lock()
		delete(t.subs, sub)
		close(sub.ch)
		t.mu.Unlock()
		h.mu.Lock()
		delete(h.all, sub)
		h.mu.Unlock()
		sub.acct.Lock()
		sub.closed = true
		h.bytes.Add(-sub.bytes) // no longer the hub's to bound
		sub.bytes, sub.sizes, sub.head = 0, nil, 0
		sub.acct.Unlock()
		h.subscribers.Add(-1)
	})
}

// reconcileLocked forgets the sizes of the events received since the last
// call. The caller holds sub.acct.
func (sub *Sub[E]) reconcileLocked() {
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
		sub.t.hub.bytes.Add(-freed)
	}
	if sub.head > 64 && sub.head*2 > len(sub.sizes) {
		n := copy(sub.sizes, sub.sizes[sub.head:])
		sub.sizes = sub.sizes[:n]
		sub.head = 0
	}
}

// offer sends e to sub without blocking if it fits the subscriber's event
// and byte buffers and the hub's budget, and reports whether it did.
func (sub *Sub[E]) offer(e E, size int) bool {
	h := sub.t.hub
	sub.acct.Lock()
	defer sub.acct.Unlock()
	if sub.closed {
		return true // being closed: not a subscriber that fell behind
	}
	sub.reconcileLocked()
	if sub.bytes+int64(size) > h.perSub {
		return false
	}
	if !h.reserve(size) {
		// Other subscribers may have read events they are still charged
		// for: settle them (without holding this one) and try again.
		sub.acct.Unlock()
		h.Bytes()
		sub.acct.Lock()
		if sub.closed {
			return true
		}
		if !h.reserve(size) {
			return false
		}
	}
	select {
	case sub.ch <- e:
		sub.sizes = append(sub.sizes, size)
		sub.bytes += int64(size)
		return true
	default:
		h.bytes.Add(-int64(size))
		return false
	}
}
