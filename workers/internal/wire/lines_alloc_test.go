package wire

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
)

// patternReader yields n bytes of 'x', a '\n', then tail, without holding
// the line in memory itself.
type patternReader struct {
	n    int
	tail string
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.n > 0 {
		k := min(len(b), p.n)
		for i := range k {
			b[i] = 'x'
		}
		p.n -= k
		return k, nil
	}
	if p.tail == "" {
		return 0, io.EOF
	}
	k := copy(b, p.tail)
	p.tail = p.tail[k:]
	return k, nil
}

// readAllocs reads every line of r with limit max and returns the lines
// (oversize as "!") and the bytes allocated meanwhile.
func readAllocs(t *testing.T, r io.Reader, max int) ([]string, uint64) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	lr := NewLineReader(r, max, nil)
	var got []string
	for {
		line, over, err := lr.Next()
		switch {
		case over:
			got = append(got, "!")
		case err == nil || len(line) > 0:
			if len(line) > 64 {
				got = append(got, "long")
			} else {
				got = append(got, string(line))
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			break
		}
	}
	runtime.ReadMemStats(&after)
	return got, after.TotalAlloc - before.TotalAlloc
}

// TestLineReaderMemoryBoundedByLimit: an oversize line costs the reader at
// most the limit (what it had to keep before knowing), never the line's
// length, and is skipped and counted; a line within the limit is assembled
// without growing copies (issue 13, item 3: each reader used to allocate
// several times the limit per oversize line and buffer up to it in
// doubling copies).
func TestLineReaderMemoryBoundedByLimit(t *testing.T) {
	const limit = 1 << 20
	const slack = 4 * ReadBuffer // the read buffer, piece headers, the test's own strings
	got, alloc := readAllocs(t, &patternReader{n: 20 << 20, tail: "\nafter\n"}, limit)
	t.Logf("20 MiB line, 1 MiB limit: %d bytes allocated", alloc)
	if fmt.Sprint(got) != "[! after]" {
		t.Fatalf("lines %v, want [! after]", got)
	}
	if alloc > limit+slack {
		t.Errorf("a 20 MiB oversize line allocated %d bytes with a %d-byte limit, want ≤ %d", alloc, limit, limit+slack)
	}
	// Several oversize lines in a row: still the limit per line at most.
	// (The input is built before readAllocs measures.)
	got, alloc = readAllocs(t, &patternReader{n: 0, tail: strings.Repeat(strings.Repeat("y", 3<<20)+"\n", 4) + "end\n"}, limit)
	if fmt.Sprint(got) != "[! ! ! ! end]" {
		t.Fatalf("lines %v", got)
	}
	if alloc > 4*limit+slack {
		t.Errorf("4 oversize lines allocated %d bytes, want ≤ %d", alloc, 4*limit+slack)
	}
	// A line of exactly the limit: its pieces plus one joined copy.
	got, alloc = readAllocs(t, &patternReader{n: limit, tail: "\nafter\n"}, limit)
	t.Logf("1 MiB line, 1 MiB limit: %d bytes allocated", alloc)
	if fmt.Sprint(got) != "[long after]" {
		t.Fatalf("lines %v, want [long after]", got)
	}
	if alloc > 2*limit+slack {
		t.Errorf("a line of the limit allocated %d bytes, want ≤ %d", alloc, 2*limit+slack)
	}
}

// TestLineReaderLongLineOwned: a line assembled across reads is handed to
// the caller to keep; one lent from the read buffer is not.
func TestLineReaderLongLineOwned(t *testing.T) {
	lr := NewLineReader(strings.NewReader("short\n"+strings.Repeat("z", 3*ReadBuffer)+"\n"), 1<<20, nil)
	if line, _, _ := lr.Next(); string(line) != "short" || lr.Owned() {
		t.Fatalf("short line %q owned %v", line, lr.Owned())
	}
	if line, _, _ := lr.Next(); len(line) != 3*ReadBuffer || !lr.Owned() {
		t.Fatalf("long line len %d owned %v", len(line), lr.Owned())
	}
}
