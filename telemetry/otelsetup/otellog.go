package otelsetup

import (
	"log/slog"
	"time"

	"github.com/go-logr/logr"
	"go.opentelemetry.io/otel"

	"github.com/workerscope/workerscope/internal/faillog"
)

// routeOTelLogs sends the OpenTelemetry SDK's own log lines and errors to
// log (component=otel), so they keep the process's format (JSON with
// --log-format json) instead of going to stderr through the standard
// library logger. Errors are rate-limited like export failures. These are
// process-wide settings of the OTel API; the last provider built sets them.
func routeOTelLogs(log *slog.Logger) {
	log = log.With("component", "otel")
	otel.SetLogger(logr.FromSlogHandler(log.Handler()))
	fails := faillog.New(log, faillog.Messages{
		First: "OpenTelemetry SDK error; further errors are summarized once a minute",
		Still: "OpenTelemetry SDK errors continue",
	}, time.Minute, nil)
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { fails.Failed(err.Error()) }))
}
