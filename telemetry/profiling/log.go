package profiling

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/workerscope/workerscope/internal/faillog"
)

// pyroscopeQueueFull is the line pyroscope-go v1.5.0 logs when it drops a
// profile because uploads fall behind (upstream/remote/remote.go). No HTTP
// request is made for that profile, so this one failure can only be seen in
// the log.
const pyroscopeQueueFull = "remote upload queue is full, dropping a profile job"

// newUploadLog is the rate-limited log of failed uploads.
func newUploadLog(log *slog.Logger, server string, now func() time.Time) *faillog.Log {
	return faillog.New(log, faillog.Messages{
		First:     "Pyroscope upload failed; profiling continues, further failures are summarized once a minute",
		Still:     "Pyroscope uploads still failing",
		Recovered: "Pyroscope uploads recovered",
	}, time.Minute, now, "server", server)
}

// pyroscopeLogger adapts slog to pyroscope-go's Logger. Its debug lines
// (one per upload and per window) go to slog's debug level, and so do its
// info lines (a multi-line dump of the configuration at start, which
// Start replaces with one structured line). Failed uploads are
// counted and logged by the HTTP client (uploadClient), so the client's
// own line for them goes to debug; a dropped profile counts as a failed
// upload; other errors go to one more rate-limited log.
type pyroscopeLogger struct {
	log     *slog.Logger
	uploads *faillog.Log
	other   *faillog.Log
}

func newPyroscopeLogger(log *slog.Logger, uploads *faillog.Log, now func() time.Time) *pyroscopeLogger {
	return &pyroscopeLogger{log: log, uploads: uploads, other: faillog.New(log, faillog.Messages{
		First: "Pyroscope client error; further errors are summarized once a minute",
		Still: "Pyroscope client errors continue",
	}, time.Minute, now)}
}

func (l *pyroscopeLogger) Debugf(format string, args ...any) { l.debug(format, args) }
func (l *pyroscopeLogger) Infof(format string, args ...any)  { l.debug(format, args) }

func (l *pyroscopeLogger) debug(format string, args []any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug("pyroscope: " + fmt.Sprintf(format, args...))
	}
}

func (l *pyroscopeLogger) Errorf(format string, args ...any) {
	switch format {
	case "upload profile: %v": // already counted and logged by uploadClient
		l.debug(format, args)
	case pyroscopeQueueFull:
		l.uploads.Failed("upload queue full (server slow or unreachable): profile dropped")
	default:
		l.other.Failed(fmt.Sprintf(format, args...))
	}
}
