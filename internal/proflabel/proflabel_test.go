package proflabel

import (
	"bytes"
	"context"
	"runtime/pprof"
	"strings"
	"testing"
)

func TestLabels(t *testing.T) {
	Do(context.Background(), Sample, func(ctx context.Context) {
		if v, _ := pprof.Label(ctx, Key); v != Sample {
			t.Errorf("Do: label %q", v)
		}
	})
	// The goroutine profile (debug=1) lists each goroutine's labels.
	ready, release := make(chan struct{}), make(chan struct{})
	go func() {
		SetGoroutine(Events)
		close(ready)
		<-release
	}()
	<-ready
	defer close(release)
	var buf bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&buf, 1); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"operation":"events"`) {
		t.Errorf("SetGoroutine: no goroutine labelled operation=events in\n%s", buf.String())
	}
}
