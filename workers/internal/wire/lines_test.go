package wire

import (
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

func TestLineReader(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", 3000)
	tests := []struct {
		name string
		in   string
		max  int
		want []string // "!" marks an oversize line
	}{
		{"lf", "a\nb\n", 1024, []string{"a", "b"}},
		{"crlf stripped once", "a\r\nb\r\r\n", 1024, []string{"a", "b\r"}},
		{"no split on CR or U+2028", "a\rb\u2028c\n", 1024, []string{"a\rb\u2028c"}},
		{"final line without newline", "a\nb", 1024, []string{"a", "b"}},
		{"empty lines kept", "\n\na\n", 1024, []string{"", "", "a"}},
		{"oversize skipped", "ok\n" + big + "\nafter\n", 1024, []string{"ok", "!", "after"}},
		{"exactly max", strings.Repeat("y", 1024) + "\n", 1024, []string{strings.Repeat("y", 1024)}},
		{"max plus one", strings.Repeat("y", 1025) + "\nz\n", 1024, []string{"!", "z"}},
		{"oversize at EOF", big, 1024, []string{"!"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lr := NewLineReader(strings.NewReader(tt.in), tt.max, nil)
			var got []string
			for {
				line, over, err := lr.Next()
				if over {
					got = append(got, "!")
				} else if line != nil || err == nil {
					got = append(got, string(line))
				}
				if err != nil {
					if !errors.Is(err, io.EOF) {
						t.Fatal(err)
					}
					break
				}
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLineReaderSmallBuffer(t *testing.T) {
	t.Parallel()
	// Lines longer than bufio's buffer are assembled across reads.
	long := strings.Repeat("z", 200<<10)
	lr := NewLineReader(strings.NewReader(long+"\nend\n"), 1<<20, nil)
	line, over, err := lr.Next()
	if err != nil || over || string(line) != long {
		t.Fatalf("long line: len %d over %v err %v", len(line), over, err)
	}
	if line, _, _ := lr.Next(); string(line) != "end" {
		t.Fatalf("next = %q", line)
	}
}

func TestTailBuffer(t *testing.T) {
	t.Parallel()
	tb := NewTailBuffer(8)
	tb.Write([]byte("hello "))
	tb.Write([]byte("world"))
	if got := tb.String(); got != "lo world" {
		t.Fatalf("tail %q", got)
	}
	tb.Write([]byte("0123456789abc"))
	if got := tb.String(); got != "56789abc" {
		t.Fatalf("tail %q", got)
	}
}

func FuzzLineReader(f *testing.F) {
	f.Add([]byte("a\r\nb\n{\"type\":\"response\"}\n"), 1024)
	f.Fuzz(func(t *testing.T, in []byte, max int) {
		max = max%4096 + 1024
		if max < 1024 {
			max = 1024
		}
		lr := NewLineReader(strings.NewReader(string(in)), max, nil)
		for i := 0; i <= len(in)+1; i++ {
			line, _, err := lr.Next()
			if len(line) > max {
				t.Fatalf("line of %d bytes over max %d", len(line), max)
			}
			if err != nil {
				return
			}
		}
		t.Fatal("reader did not reach EOF")
	})
}

func FuzzParseCommand(f *testing.F) {
	f.Add([]byte(`{"type":"prompt","id":7}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, obj, err := ParseCommand(b)
		if err == nil && (typ == "" || obj == nil) {
			t.Fatalf("accepted %q without a type", b)
		}
	})
}

// TestLineReaderPipe reads the cases of TestLineReader through a pipe,
// written in fragments with pauses, so that the reader runs out of input
// mid-line and waits without its buffer (issue 22): the lines must be the
// same.
func TestLineReaderPipe(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", 3000)
	long := strings.Repeat("z", 3*ReadBuffer+17)
	tests := []struct {
		name string
		in   string
		max  int
		frag int // bytes per write
		want []string
	}{
		{"lf in one write", "a\nb\n", 1024, 1 << 20, []string{"a", "b"}},
		{"byte by byte", "ab\r\n{\"x\":1}\nc", 1024, 1, []string{"ab", `{"x":1}`, "c"}},
		{"oversize in fragments", "ok\n" + big + "\nafter\n", 1024, 700, []string{"ok", "!", "after"}},
		{"exactly max in fragments", strings.Repeat("y", 1024) + "\n", 1024, 100, []string{strings.Repeat("y", 1024)}},
		{"max plus one in fragments", strings.Repeat("y", 1025) + "\nz\n", 1024, 100, []string{"!", "z"}},
		{"longer than the buffer", long + "\nend\n", 1 << 20, 40 << 10, []string{long, "end"}},
		{"longer than the buffer, over max", long + "\nend\n", 2 * ReadBuffer, 40 << 10, []string{"!", "end"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			go func() {
				defer w.Close()
				for s := tt.in; len(s) > 0; {
					k := min(tt.frag, len(s))
					if _, err := w.WriteString(s[:k]); err != nil {
						return
					}
					s = s[k:]
					time.Sleep(time.Millisecond)
				}
			}()
			pool := new(BufferPool)
			lr := NewLineReader(r, tt.max, pool)
			var got []string
			for {
				line, over, err := lr.Next()
				if over {
					got = append(got, "!")
				} else if line != nil || err == nil {
					got = append(got, string(line))
				}
				if err != nil {
					if !errors.Is(err, io.EOF) {
						t.Fatal(err)
					}
					break
				}
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Fatalf("got %.80q, want %.80q", got, tt.want)
			}
			if lr.Holding() || pool.InUse() != 0 {
				t.Errorf("after EOF the reader holds a buffer (%v; %d in use)", lr.Holding(), pool.InUse())
			}
		})
	}
}

// TestLineReaderIdleHoldsNoBuffer: a reader waiting for input, between
// lines or in the middle of one, holds no read buffer; the line is whole
// once the rest arrives.
func TestLineReaderIdleHoldsNoBuffer(t *testing.T) {
	t.Parallel()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	pool := new(BufferPool)
	lr := NewLineReader(r, 1<<20, pool)
	type result struct {
		line  string
		owned bool
		err   error
	}
	next := func() <-chan result {
		ch := make(chan result, 1)
		go func() {
			line, _, err := lr.Next()
			ch <- result{string(line), lr.Owned(), err}
		}()
		return ch
	}
	idle := func(what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for pool.InUse() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the waiting reader holds %d buffers", what, pool.InUse())
			}
			time.Sleep(time.Millisecond)
		}
	}
	steps := []struct {
		write string
		want  result
	}{
		{"first\nsec", result{line: "first"}},
		{"ond\n", result{line: "second", owned: true}}, // "sec" was kept while waiting
	}
	for _, st := range steps {
		ch := next()
		idle("before " + st.want.line)
		if _, err := w.WriteString(st.write); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-ch:
			if got != st.want {
				t.Fatalf("got %+v, want %+v", got, st.want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no line %q", st.want.line)
		}
	}
	ch := next()
	idle("after the lines")
	w.Close()
	if got := <-ch; !errors.Is(got.err, io.EOF) {
		t.Fatalf("at EOF: %+v", got)
	}
}

// TestChunkReader: the chunks of a pipe and of a plain reader add up to
// the input; waiting on the pipe, the reader holds no buffer, and none
// after the end.
func TestChunkReader(t *testing.T) {
	t.Parallel()
	in := strings.Repeat("stderr line\n", 20000) + "no newline"
	for _, tt := range []struct {
		name string
		pipe bool
	}{{"pipe", true}, {"reader", false}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var src io.Reader = strings.NewReader(in)
			pool := new(BufferPool)
			if tt.pipe {
				r, w, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				go func() {
					defer w.Close()
					for s := in; len(s) > 0; {
						k := min(5000, len(s))
						if _, err := w.WriteString(s[:k]); err != nil {
							return
						}
						s = s[k:]
						time.Sleep(time.Millisecond)
					}
				}()
				src = r
			}
			cr := NewChunkReader(src, pool)
			var got strings.Builder
			for {
				b, err := cr.Next()
				got.Write(b)
				if err != nil {
					if !errors.Is(err, io.EOF) {
						t.Fatal(err)
					}
					break
				}
			}
			if got.String() != in {
				t.Fatalf("read %d bytes, want the %d written", got.Len(), len(in))
			}
			if cr.Holding() || pool.InUse() != 0 {
				t.Errorf("after EOF the reader holds a buffer (%v; %d in use)", cr.Holding(), pool.InUse())
			}
		})
	}
}
