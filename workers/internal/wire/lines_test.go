package wire

import (
	"errors"
	"io"
	"strings"
	"testing"
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
			lr := NewLineReader(strings.NewReader(tt.in), tt.max)
			lr.r.Reset(strings.NewReader(tt.in)) // default 64 KiB buffer
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
	lr := NewLineReader(strings.NewReader(long+"\nend\n"), 1<<20)
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
		lr := NewLineReader(strings.NewReader(string(in)), max)
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
