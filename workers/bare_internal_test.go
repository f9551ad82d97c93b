package workers

import (
	"io"
	"log/slog"
	"time"

	"github.com/workerscope/workerscope/workers/internal/fanout"
)

// bareWorker is a worker with no process behind it, of a Manager that was
// not started: enough to feed lines through its read path.
func bareWorker(cfg Config) *worker {
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	m := &Manager{now: time.Now, cfg: cfg, log: cfg.Logger, events: fanout.NewHub[Event](1<<20, 1<<20)}
	s := &session{key: "k", events: fanout.NewTopic(m.events)}
	return &worker{m: m, s: s, id: "w-1", key: "k", pending: map[string]chan reply{}}
}
