package otelsetup

import (
	"context"
	"log/slog"
	"time"

	"github.com/go-logr/logr"
	"go.opentelemetry.io/otel"

	"github.com/workerscope/workerscope/internal/faillog"
)

// routeOTelLogs sends the OpenTelemetry SDK's own log lines and errors to
// log, so they keep the process's format (JSON with --log-format json)
// instead of going to stderr through the standard library logger. Errors
// are rate-limited like export failures. These are process-wide settings
// of the OTel API; the last provider built sets them.
func routeOTelLogs(log *slog.Logger) {
	otel.SetLogger(logr.FromSlogHandler(sdkLines{log.Handler()}))
	fails := faillog.New(log, faillog.Messages{
		First: "OpenTelemetry SDK error; further errors are summarized once a minute",
		Still: "OpenTelemetry SDK errors continue",
	}, time.Minute, nil)
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { fails.Failed(err.Error()) }))
}

// sdkLines lowers to debug the SDK's "parse url" errors: each OTLP exporter
// also reads OTEL_EXPORTER_OTLP_*ENDPOINT itself and fails on a bare
// host:port such as 127.0.0.1:4318, which the spec allows and
// resolveSignal has already turned into the URL the exporter is given
// (WithEndpointURL wins over the exporter's own reading). An endpoint that
// is really wrong stops start-up with an error naming the variable.
type sdkLines struct{ slog.Handler }

func (h sdkLines) Enabled(ctx context.Context, l slog.Level) bool {
	return h.Handler.Enabled(ctx, l) || h.Handler.Enabled(ctx, slog.LevelDebug)
}

func (h sdkLines) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "parse url" && r.Level >= slog.LevelError {
		r.Level = slog.LevelDebug
		r.Message = "the OpenTelemetry SDK's own reading of an OTLP endpoint variable failed; workerscope resolved it itself"
	}
	if !h.Handler.Enabled(ctx, r.Level) {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h sdkLines) WithAttrs(as []slog.Attr) slog.Handler { return sdkLines{h.Handler.WithAttrs(as)} }
func (h sdkLines) WithGroup(n string) slog.Handler       { return sdkLines{h.Handler.WithGroup(n)} }
