package sandbox

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
)

// MaxUIDRange bounds the size of a worker uid range: far more than any
// pool of live workers, small enough that a typo (a missing dash, an extra
// digit) is caught.
const MaxUIDRange = 1 << 16

// UIDRange is an inclusive range of user IDs for workers. The zero value
// is "no range" (tier 2 off).
type UIDRange struct {
	First, Last uint32
}

// IsZero reports whether r is unset.
func (r UIDRange) IsZero() bool { return r == UIDRange{} }

// Size is the number of uids in r (0 when unset).
func (r UIDRange) Size() int {
	if r.IsZero() {
		return 0
	}
	return int(r.Last-r.First) + 1
}

// Contains reports whether uid is in r.
func (r UIDRange) Contains(uid uint32) bool { return !r.IsZero() && uid >= r.First && uid <= r.Last }

// Overlaps reports whether r and o share a uid.
func (r UIDRange) Overlaps(o UIDRange) bool {
	return !r.IsZero() && !o.IsZero() && r.First <= o.Last && o.First <= r.Last
}

// String formats r as FIRST-LAST ("" when unset), as ParseUIDRange reads it.
func (r UIDRange) String() string {
	if r.IsZero() {
		return ""
	}
	return fmt.Sprintf("%d-%d", r.First, r.Last)
}

// ParseUIDRange parses FIRST-LAST, e.g. "200000-200999". Both ends are
// included; uid 0 (root) and 4294967295 ((uid_t)-1, "no change") are
// refused, as are reversed ranges and ranges over MaxUIDRange uids.
// "" parses to the zero UIDRange.
func ParseUIDRange(s string) (UIDRange, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return UIDRange{}, nil
	}
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return UIDRange{}, fmt.Errorf("invalid uid range %q: want FIRST-LAST, e.g. 200000-200999", s)
	}
	first, err1 := strconv.ParseUint(strings.TrimSpace(a), 10, 32)
	last, err2 := strconv.ParseUint(strings.TrimSpace(b), 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return UIDRange{}, fmt.Errorf("invalid uid range %q: want two whole numbers FIRST-LAST: %w", s, err)
	}
	r := UIDRange{First: uint32(first), Last: uint32(last)}
	switch {
	case r.First == 0:
		return UIDRange{}, fmt.Errorf("invalid uid range %q: includes uid 0 (root)", s)
	case r.Last == ^uint32(0):
		return UIDRange{}, fmt.Errorf("invalid uid range %q: includes 4294967295, which means \"no uid\"", s)
	case r.Last < r.First:
		return UIDRange{}, fmt.Errorf("invalid uid range %q: reversed (%d > %d)", s, r.First, r.Last)
	case r.Size() > MaxUIDRange:
		return UIDRange{}, fmt.Errorf("invalid uid range %q: %d uids, more than the %d allowed", s, r.Size(), MaxUIDRange)
	}
	return r, nil
}

// ErrUIDsExhausted is returned by UIDPool.Acquire when every uid of the
// range belongs to a live (or not yet fully gone) worker tree.
var ErrUIDsExhausted = errors.New("sandbox: worker uid range exhausted")

// UIDPool hands out the uids of a range, each to at most one holder at a
// time. Uids never handed out come first, then released ones oldest
// first, so a uid is reused as late as possible. It is safe for concurrent use.
type UIDPool struct {
	r    UIDRange
	mu   sync.Mutex
	next uint32   // the lowest uid never handed out yet (r.Last+1: none)
	free []uint32 // released uids, oldest first
	used map[uint32]bool
	// quarantined uids are never handed out again (their processes
	// could not be killed).
	quarantined int
}

// NewUIDPool returns a pool over r.
func NewUIDPool(r UIDRange) *UIDPool {
	return &UIDPool{r: r, next: r.First, used: make(map[uint32]bool)}
}

// Range is the pool's range.
func (p *UIDPool) Range() UIDRange { return p.r }

// Acquire takes a uid. It fails with ErrUIDsExhausted (wrapped, naming the
// range and how many uids are held) when none is free.
func (p *UIDPool) Acquire() (uint32, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var uid uint32
	switch {
	case !p.r.IsZero() && p.next >= p.r.First && p.next <= p.r.Last:
		uid = p.next // never handed out: preferred, so released ones rest longest
		if p.next == p.r.Last {
			p.next = 0 // every uid handed out once: next < First from now on
		} else {
			p.next++
		}
	case len(p.free) > 0:
		uid = p.free[0]
		p.free = p.free[1:]
	default:
		return 0, fmt.Errorf("%w: all %d uids of %s belong to live or stopping workers (%d quarantined)",
			ErrUIDsExhausted, p.r.Size(), p.r, p.quarantined)
	}
	p.used[uid] = true
	return uid, nil
}

// Release gives uid back; call it only once no process runs as uid.
func (p *UIDPool) Release(uid uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.used[uid] {
		return
	}
	delete(p.used, uid)
	p.free = append(p.free, uid)
}

// Quarantine retires uid for good: processes still run as it.
func (p *UIDPool) Quarantine(uid uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.used[uid] {
		delete(p.used, uid)
		p.quarantined++
	}
}

// InUse is the number of uids held.
func (p *UIDPool) InUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.used)
}
