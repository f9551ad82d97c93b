//go:build linux

package workers_test

import (
	"testing"
	"time"

	"github.com/workerscope/workerscope/internal/testutil"

	"github.com/workerscope/workerscope/workers"
)

// TestSubscriberBuffersBoundedInBytes: subscribers that do not read and a
// worker printing big events keep at most SubscriberBufferBytes buffered
// per subscriber and SubscriberBytesBudget for all of them; the rest is
// dropped and counted, and a subscriber that catches up is charged nothing
// (issue 13, item 2: buffers counted events, and one slow subscriber of
// 15 MB events pinned 848 MB).
func TestSubscriberBuffersBoundedInBytes(t *testing.T) {
	const perSub, budget = 1 << 20, 3 << 19 // 1 MiB each, 1.5 MiB in all
	cfg := demoConfig(t)
	parallel(t, &cfg)
	cfg.SubscriberBufferBytes = perSub
	cfg.SubscriberBytesBudget = budget
	m := newManager(t, cfg)
	subs := map[string]*workers.Subscription{}
	for _, key := range []string{"a", "b"} {
		sub, err := m.Subscribe(key, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(sub.Close)
		subs[key] = sub
	}
	// 40 events of ~200 kB each per session: 8 MB each, 16 MB in all,
	// well under the 256-event buffers.
	const flood = `{"type":"flood","lines":40,"bytes":200000,"kind":"oversize"}`
	for key := range subs {
		if r := send(t, m, key, flood); !r.Success {
			t.Fatal(r.Error)
		}
	}
	testutil.Eventually(t, 10*time.Second, "every event delivered or dropped", func() bool {
		n := 0
		for _, sub := range subs {
			n += len(sub.C) + int(sub.Dropped())
		}
		return n >= 2*(1+40) // worker_start and the flood each
	})
	var total int64
	for key, sub := range subs {
		b := sub.BufferedBytes()
		t.Logf("subscriber %s: %d events, %d bytes buffered, %d dropped", key, len(sub.C), b, sub.Dropped())
		if b > perSub {
			t.Errorf("subscriber %s buffers %d bytes, over its %d", key, b, perSub)
		}
		if sub.Dropped() == 0 {
			t.Errorf("subscriber %s dropped nothing of 8 MB", key)
		}
		total += b
	}
	st := m.Stats()
	if st.SubscriberBytes != total || st.SubscriberBytes > budget {
		t.Errorf("Stats.SubscriberBytes %d (subscribers %d), want ≤ %d", st.SubscriberBytes, total, budget)
	}
	if st.EventsDropped != subs["a"].Dropped()+subs["b"].Dropped() {
		t.Errorf("EventsDropped %d", st.EventsDropped)
	}
	// One catches up: it is charged nothing, and the room it freed takes
	// the next events.
	for len(subs["a"].C) > 0 {
		<-subs["a"].C
	}
	if b := subs["a"].BufferedBytes(); b != 0 {
		t.Fatalf("a drained but charged %d bytes", b)
	}
	if got := m.Stats().SubscriberBytes; got != subs["b"].BufferedBytes() {
		t.Fatalf("budget charged %d after a drained, want b's %d", got, subs["b"].BufferedBytes())
	}
	dropped := subs["a"].Dropped()
	if r := send(t, m, "a", `{"type":"flood","lines":2,"bytes":100000,"kind":"oversize"}`); !r.Success {
		t.Fatal(r.Error)
	}
	testutil.Eventually(t, 5*time.Second, "the new events", func() bool { return len(subs["a"].C) == 2 })
	if subs["a"].Dropped() != dropped {
		t.Errorf("dropped after catching up: %d → %d", dropped, subs["a"].Dropped())
	}
}
