package fanout

import "testing"

// TestBudgets: a subscription holds at most perSub bytes, all of them at
// most the budget; what is received is free again; Close gives its bytes
// back.
func TestBudgets(t *testing.T) {
	t.Parallel()
	h := NewHub[string](10, 100)
	tp := NewTopic(h)
	a, b := tp.Subscribe(100), tp.Subscribe(100)
	for range 3 {
		tp.Publish("four", 4) // a and b each take two (8 of 10 bytes), the third does not fit
	}
	if a.BufferedBytes() != 8 || a.Dropped() != 1 {
		t.Fatalf("a: %d bytes, %d dropped", a.BufferedBytes(), a.Dropped())
	}
	if got := h.Bytes(); got != 16 {
		t.Fatalf("%d bytes buffered, want 16", got)
	}
	<-a.C()
	<-a.C()
	if a.BufferedBytes() != 0 {
		t.Fatalf("a: %d bytes after reading everything", a.BufferedBytes())
	}
	b.Close()
	if h.Bytes() != 0 || h.Subscribers() != 1 {
		t.Fatalf("after b closed: %d bytes, %d subscribers", h.Bytes(), h.Subscribers())
	}
	for range b.C() { // closed: the loop ends once it is drained
	}
	if h.Dropped() != a.Dropped()+b.Dropped() {
		t.Fatalf("hub dropped %d, subscribers %d+%d", h.Dropped(), a.Dropped(), b.Dropped())
	}
	tp.CloseAll()
	if h.Subscribers() != 0 || tp.Len() != 0 {
		t.Fatal("CloseAll left subscriptions")
	}
}

// TestSharedBudget: the hub's budget bounds all subscriptions together.
func TestSharedBudget(t *testing.T) {
	t.Parallel()
	h := NewHub[string](10, 6)
	tp := NewTopic(h)
	a, b := tp.Subscribe(100), tp.Subscribe(100)
	tp.Publish("four", 4) // one of them gets it, the other would go over 6
	if h.Bytes() != 4 || a.Dropped()+b.Dropped() != 1 {
		t.Fatalf("%d bytes, %d+%d dropped", h.Bytes(), a.Dropped(), b.Dropped())
	}
}
