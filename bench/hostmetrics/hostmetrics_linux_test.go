//go:build linux

package hostmetrics

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/receiver/hostmetricsreceiver"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// hostmetricsPhase runs the collector's hostmetrics receiver with only its
// process scraper, as a collector would from this configuration:
//
//	hostmetrics:
//	  collection_interval: <cfg.interval>
//	  initial_delay: 0s
//	  scrapers:
//	    process:
//	      include: {names: [<name>], match_type: strict}
//	      mute_process_exe_error: true
//	      mute_process_name_error: true
//
// with the metrics the scraper enables by default (process.cpu.time,
// process.memory.usage, process.memory.virtual, process.disk.io) and its
// default resource attributes. It consumes the scrapes in process, checks
// that each holds exactly the workers' processes (pids), and returns the
// process CPU per steady scrape. The receiver is shut down before it returns.
func hostmetricsPhase(ctx context.Context, tb testing.TB, name string, pids map[int64]bool, cfg config) (time.Duration, error) {
	f := hostmetricsreceiver.NewFactory()
	rcfg := f.CreateDefaultConfig()
	err := confmap.NewFromStringMap(map[string]any{
		"collection_interval": cfg.interval.String(),
		"initial_delay":       "0s",
		"scrapers": map[string]any{"process": map[string]any{
			"include": map[string]any{"names": []any{name}, "match_type": "strict"},
			// The errors seen here, both before the name filter, so about
			// every process of the machine: the executable of every kernel
			// thread (and of pid 1 in a container) cannot be read, and a
			// process that exits between the listing and the read of its
			// name fails it (most scrapes on a busy machine). Unmuted, each
			// makes the scrape a partial failure, logged.
			"mute_process_exe_error":  true,
			"mute_process_name_error": true,
		}},
	}).Unmarshal(rcfg)
	if err != nil {
		return 0, fmt.Errorf("configuration: %w", err)
	}
	if v, ok := rcfg.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			return 0, fmt.Errorf("configuration: %w", err)
		}
	}

	arrivals := make(chan arrival, cfg.cycles+2)
	var scrapes atomic.Int64
	next, err := consumer.NewMetrics(func(_ context.Context, md pmetric.Metrics) error {
		cpu := processCPU()
		k := scrapes.Add(1)
		if k > int64(cfg.cycles+2) {
			return nil
		}
		a := arrival{cpu: cpu}
		if got := md.ResourceMetrics().Len(); got != len(pids) {
			a.err = fmt.Errorf("the scraper reported %d processes, want the %d workers", got, len(pids))
		} else if k == 1 || k == int64(cfg.cycles+2) { // outside the measured window
			a.err = checkScrape(md, pids)
		}
		arrivals <- a
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("consumer: %w", err)
	}
	set := receivertest.NewNopSettings(f.Type())
	set.Logger = zaptest.NewLogger(tb, zaptest.Level(zap.WarnLevel))
	rcv, err := f.CreateMetrics(ctx, set, rcfg, next)
	if err != nil {
		return 0, fmt.Errorf("receiver: %w", err)
	}
	if err := rcv.Start(ctx, componenttest.NewNopHost()); err != nil {
		return 0, fmt.Errorf("receiver start: %w", err)
	}
	d, err := window(arrivals, cfg.cycles, phaseTimeout(cfg, len(pids)))
	if serr := rcv.Shutdown(ctx); serr != nil {
		err = errors.Join(err, fmt.Errorf("receiver shutdown: %w", serr))
	}
	return d, err
}

// checkScrape says whether a scrape holds exactly the processes pids, one
// resource each, with the default metrics.
func checkScrape(md pmetric.Metrics, pids map[int64]bool) error {
	seen := make(map[int64]bool, len(pids))
	for i := range md.ResourceMetrics().Len() {
		rm := md.ResourceMetrics().At(i)
		v, ok := rm.Resource().Attributes().Get("process.pid")
		if !ok || !pids[v.Int()] || seen[v.Int()] {
			return fmt.Errorf("resource %d: process.pid %v is not one of the workers, or twice", i, v.AsRaw())
		}
		seen[v.Int()] = true
		if rm.ScopeMetrics().Len() != 1 {
			return fmt.Errorf("process %d: %d scopes", v.Int(), rm.ScopeMetrics().Len())
		}
		if m := rm.ScopeMetrics().At(0).Metrics().Len(); m != 4 {
			return fmt.Errorf("process %d: %d metrics, want the 4 enabled by default", v.Int(), m)
		}
	}
	return nil
}
