package faillog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestRateLimitAndRecovery(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1_000_000, 0)
	l := New(slog.New(slog.NewTextHandler(&buf, nil)), Messages{First: "first", Still: "still", Recovered: "recovered"},
		time.Minute, func() time.Time { return now }, "endpoint", "x")
	count := func(msg string) int { return strings.Count(buf.String(), "msg="+msg+" ") }

	for range 10 {
		l.Failed("refused")
		now = now.Add(time.Second)
	}
	if count("first") != 1 || count("still") != 0 {
		t.Fatalf("first minute:\n%s", buf.String())
	}
	now = now.Add(time.Minute)
	l.Failed("again")
	if count("still") != 1 || !strings.Contains(buf.String(), "failed=10 last_err=again") {
		t.Fatalf("summary:\n%s", buf.String())
	}
	if err := l.Err(); err == nil || !strings.Contains(err.Error(), "11 in a row; last: again") {
		t.Fatalf("Err = %v", err)
	}
	l.Succeeded()
	l.Succeeded()
	if count("recovered") != 1 || !strings.Contains(buf.String(), "failed=11") || l.Err() != nil {
		t.Fatalf("recovery:\n%s", buf.String())
	}
	if l.Failures() != 11 || !strings.Contains(buf.String(), "endpoint=x") {
		t.Fatalf("failures %d, attrs:\n%s", l.Failures(), buf.String())
	}

	// Muted: counted, not logged.
	buf.Reset()
	l.Mute()
	l.Failed("after stop")
	l.Summarize()
	if buf.Len() != 0 || l.Failures() != 12 {
		t.Fatalf("muted log wrote %q, failures %d", buf.String(), l.Failures())
	}
}

func TestSummarizeAtShutdown(t *testing.T) {
	var buf bytes.Buffer
	l := New(slog.New(slog.NewTextHandler(&buf, nil)), Messages{First: "first", Still: "still"}, 0, nil)
	l.Summarize() // nothing failing: nothing to say
	l.Failed("a")
	l.Failed("b")
	l.Summarize()
	if !strings.Contains(buf.String(), "msg=still failed=1 last_err=b") {
		t.Fatalf("got:\n%s", buf.String())
	}
}
