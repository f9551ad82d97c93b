package telemetry

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/workerscope/workerscope/workers"
)

// Supervisor is what telemetry reads from the worker manager.
type Supervisor interface {
	Source
	StatsSource
}

// Options configures Start.
type Options struct {
	// Supervisor is the worker manager. Required.
	Supervisor Supervisor
	// Version is service.version.
	Version string
	// ServiceName is the default service.name. Default "workerscope".
	ServiceName string
	// InstanceID is service.instance.id (default: a random UUID).
	InstanceID string
	// Getenv reads the OTEL_* environment. Required.
	Getenv func(string) string
	Logger *slog.Logger
	// DropWorkerKey leaves the worker.key attribute out.
	DropWorkerKey bool
	// MaxWorkerSeries caps the workers observed per collection.
	MaxWorkerSeries int
	// SamplerMinInterval: passes closer than this share one Report.
	// Default 1s.
	SamplerMinInterval time.Duration
	// SSEClients reports open event streams.
	SSEClients func() int64
	// Gauges are the application's extra process gauges.
	Gauges *Gauges
	// Readers are extra metric readers (e.g. Prometheus).
	Readers []sdkmetric.Reader
	// RPC, if set, starts forwarding RPC results to the instruments.
	RPC *RPCHook
	// ProfilingUploadErrors, if set, reports failed profile uploads.
	ProfilingUploadErrors func() uint64
	// Started is when the process started (process.uptime). Default now.
	Started time.Time
}

// Telemetry is the running pipeline: one Sampler feeding the instruments of
// one MeterProvider (and, through Sampler, the JSON API and page).
type Telemetry struct {
	Provider *Provider
	Sampler  *Sampler
	Metrics  *Metrics
}

// RPCHook forwards workers.RPCResult to the instruments once they exist,
// so it can be set as workers.Config.OnRPC before the Manager (which
// telemetry needs) is created.
type RPCHook struct{ m atomic.Pointer[Metrics] }

// OnRPC records r if the instruments exist. Use it as workers.Config.OnRPC.
func (h *RPCHook) OnRPC(r workers.RPCResult) {
	if m := h.m.Load(); m != nil {
		m.RecordRPC(r)
	}
}

// Start builds the sampler, the provider and the instruments.
func Start(ctx context.Context, opts Options) (*Telemetry, error) {
	if opts.Supervisor == nil {
		return nil, errors.New("telemetry: Options.Supervisor is nil")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	var metrics atomic.Pointer[Metrics]
	sampler, err := NewSampler(opts.Supervisor, SamplerOptions{
		MinInterval: opts.SamplerMinInterval,
		OnPass: func(d time.Duration, failed int) {
			if m := metrics.Load(); m != nil {
				m.RecordSamplerPass(d.Seconds())
			}
		},
	})
	if err != nil {
		return nil, err
	}
	prov, err := NewProvider(ctx, ProviderOptions{
		ServiceName:      opts.ServiceName,
		Version:          opts.Version,
		InstanceID:       opts.InstanceID,
		Getenv:           opts.Getenv,
		Readers:          opts.Readers,
		CardinalityLimit: 2*max(opts.MaxWorkerSeries, 2000) + 96,
		RuntimeMetrics:   true,
		Logger:           opts.Logger,
	})
	if err != nil {
		return nil, err
	}
	m, err := NewMetrics(prov.Meter, MetricsOptions{
		Sampler:         sampler,
		Stats:           opts.Supervisor,
		DropWorkerKey:   opts.DropWorkerKey,
		MaxWorkerSeries: opts.MaxWorkerSeries,
		SSEClients:      opts.SSEClients,
		ExportErrors:    prov.ExportErrors,
		Gauges:          opts.Gauges,
		Started:         opts.Started,

		ProfilingUploadErrors: opts.ProfilingUploadErrors,
	})
	if err != nil {
		_ = prov.Shutdown(ctx)
		return nil, err
	}
	metrics.Store(m)
	if opts.RPC != nil {
		opts.RPC.m.Store(m)
	}
	return &Telemetry{Provider: prov, Sampler: sampler, Metrics: m}, nil
}

// Shutdown flushes the last export within ctx's deadline.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	return t.Provider.Shutdown(ctx)
}
