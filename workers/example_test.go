//go:build linux

package workers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"time"

	"github.com/workerscope/workerscope/workers"
	"github.com/workerscope/workerscope/workers/demoworker"
)

// A service embeds a Manager: one worker per session key, spawned on the
// session's first command and stopped by Close. Here the worker is the
// built-in demo worker (this test binary, see demoworker.TestMain); a real
// service runs e.g. []string{"pi", "--mode", "rpc"}.
func ExampleManager() {
	argv, env := demoworker.TestCommand()
	m, err := workers.New(workers.Config{
		Command:          argv,
		Env:              env,
		IdleTTL:          time.Minute,
		DisableSubreaper: true, // the embedding program keeps its own children
		RuntimeDir:       "-",
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := m.Send(ctx, "alice", []byte(`{"type":"get_state","id":"req-1"}`))
	if err != nil {
		log.Fatal(err)
	}
	var r struct {
		ID      string `json:"id"`
		Command string `json:"command"`
		Success bool   `json:"success"`
	}
	if err := json.Unmarshal(resp, &r); err != nil {
		log.Fatal(err)
	}
	fmt.Println(r.ID, r.Command, r.Success)
	for _, w := range m.Snapshot() {
		fmt.Println(w.Key, w.State)
	}
	// Output:
	// req-1 get_state true
	// alice idle
}
