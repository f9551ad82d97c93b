//go:build linux

package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	fleetInstances    = 3
	fleetGatewayToken = "e2e-gateway-token-fedcba9876543210"
)

var instanceIDRE = regexp.MustCompile(`service_instance_id=(\S+)`)

// instanceID is the service.instance.id a workerscope logged at start.
func instanceID(t testing.TB, a *app) string {
	t.Helper()
	var m []string
	// The "started" line follows the banner that waitServing saw.
	waitFor(t, 10*time.Second, "workerscope to log its service_instance_id", func() bool {
		m = instanceIDRE.FindStringSubmatch(a.output())
		return m != nil
	}, a.proc)
	return strings.Trim(m[1], `"`)
}

// promValue is the value of one series in a workerscope's own Prometheus
// exposition (GET /metrics with Accept: text/plain), summed over the
// series of that name; false when the name is absent.
func promValue(t testing.TB, a *app, name string) (float64, bool) {
	t.Helper()
	b := a.scrape(t, "text/plain")
	sum, found := 0.0, false
	for _, line := range strings.Split(b, "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		f := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		sum, found = sum+v, true
	}
	return sum, found
}

// byInstance runs a query whose result carries an instance label and
// returns instance → value.
func byInstance(api promAPI, expr string) (map[string]float64, error) {
	v, err := api.query(expr)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, s := range v {
		str, _ := s.Value[1].(string)
		f, err := strconv.ParseFloat(str, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: value %v", expr, s.Value)
		}
		out[s.Metric["instance"]] = f
	}
	return out, nil
}

// fleetMember is one supervisor with its own agent collector.
type fleetMember struct {
	app      *app
	agent    *proc
	id       string // service.instance.id
	sessions int
}

// startFleetMember runs an agent (the shipped config + the gateway
// overlay) that forwards to gatewayURL with gwToken, and a workerscope
// exporting to it.
func startFleetMember(t testing.TB, bin, gatewayURL, gwToken string) *fleetMember {
	t.Helper()
	grpcAddr := freePort(t)
	agent := startOtelcol(t, []string{
		"OTELCOL_GRPC_ENDPOINT=" + grpcAddr,
		"OTELCOL_HTTP_ENDPOINT=" + freePort(t),
		"OTELCOL_GATEWAY_ENDPOINT=" + gatewayURL,
		"OTELCOL_GATEWAY_TOKEN=" + gwToken,
		"OTELCOL_BATCH_TIMEOUT=200ms",
		"OTELCOL_METRICS_LEVEL=none", // no listener on 8888
	}, "otel-collector.yaml", filepath.Join("backends", "gateway.yaml"))
	a := startAppBin(t, bin, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + grpcAddr}, "--idle-ttl", "0", "--max-workers", "16")
	return &fleetMember{app: a, agent: agent, id: instanceID(t, a)}
}

// TestFleetTelemetryThroughGateway: three workerscope instances, each
// exporting to its own agent collector (otel-collector.yaml +
// backends/gateway.yaml), which forwards over OTLP/HTTP with the bearer
// token to one gateway collector (otel-collector-gateway.yaml +
// gateway/prometheus.yaml, persistent queue), which pushes to a real
// Prometheus 3. Each instance appears exactly once under its own
// service.instance.id; fleet totals in Prometheus equal the sum of what
// the instances themselves report; a fourth agent with a wrong token is
// refused by the gateway and its instance never reaches Prometheus.
func TestFleetTelemetryThroughGateway(t *testing.T) {
	began := time.Now()
	collectorBinary(t)
	promBinary(t, "WORKERSCOPE_PROMETHEUS", "prometheus")
	bin := workerscopeBinary(t)

	prom, api := startPrometheus(t, "5s")
	gwHTTP := freePort(t)
	gateway := startOtelcol(t, []string{
		"OTELCOL_GRPC_ENDPOINT=" + freePort(t),
		"OTELCOL_HTTP_ENDPOINT=" + gwHTTP,
		"OTELCOL_GATEWAY_TOKEN=" + fleetGatewayToken,
		"OTELCOL_QUEUE_DIR=" + t.TempDir(),
		"OTELCOL_PROMETHEUS_ENDPOINT=" + api.base + "/api/v1/otlp",
		"OTELCOL_BATCH_TIMEOUT=200ms",
		"OTELCOL_MEMORY_LIMIT_MIB=512",
		"OTELCOL_METRICS_LEVEL=none",
	}, "otel-collector-gateway.yaml", filepath.Join("gateway", "prometheus.yaml"))
	gatewayURL := "http://" + gwHTTP

	// The gateway refuses a push without the token.
	if resp, err := http.Post(gatewayURL+"/v1/metrics", "application/x-protobuf", strings.NewReader("")); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("push to the gateway without a token: %d, want 401", resp.StatusCode)
		}
	}

	fleet := make([]*fleetMember, fleetInstances)
	for i := range fleet {
		fleet[i] = startFleetMember(t, bin, gatewayURL, fleetGatewayToken)
	}
	intruder := startFleetMember(t, bin, gatewayURL, "wrong-"+fleetGatewayToken)
	all := append(slices.Clone(fleet), intruder)

	var last string // what Prometheus showed last, for a failure report
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		t.Logf("last seen in Prometheus: %s", last)
		procs := []*proc{prom, gateway}
		for _, m := range all {
			procs = append(procs, m.agent, m.app.proc)
		}
		for _, p := range procs {
			t.Logf("output of %s:\n%s", filepath.Base(p.cmd.Path), tail(p.output(), 4000))
		}
	})

	// Load: instance i runs 2+i sessions (different counts, so a total
	// that counted one instance twice or missed one would not match), a
	// prompt and a get_state each.
	prefixes := map[string]bool{}
	for i, m := range all {
		m.sessions = 2 + i
		for s := 0; s < m.sessions; s++ {
			key := fmt.Sprintf("fleet-%d-%d", i, s)
			m.app.rpc(t, key, `{"type":"prompt","message":"hi","cpu_ms":20,"events":1}`)
			m.app.rpc(t, key, `{"type":"get_state"}`)
		}
		ws := m.app.workers(t)
		if len(ws) != m.sessions {
			t.Fatalf("instance %d: %d workers, want %d", i, len(ws), m.sessions)
		}
		for _, w := range ws {
			prefixes[instancePrefix(w.ID)] = true
		}
	}
	ids := map[string]bool{}
	for i, m := range fleet {
		if ids[m.id] {
			t.Fatalf("instance %d has the service.instance.id %s of another", i, m.id)
		}
		ids[m.id] = true
	}

	// The load has stopped and --idle-ttl 0 reaps nothing: each
	// instance's spawn counter and live workers stay where they are. Wait
	// (bounded) for Prometheus to show every instance's own values.
	own := map[string]float64{}
	for _, m := range fleet {
		v, ok := promValue(t, m.app, "workerscope_worker_spawns_total")
		if !ok {
			t.Fatalf("instance %s: no workerscope_worker_spawns_total on /metrics", m.id)
		}
		own[m.id] = v
	}
	var limits, spawns, live map[string]float64
	waitFor(t, 90*time.Second, "Prometheus to show each instance's spawns and workers", func() bool {
		var err error
		if limits, err = byInstance(api, `count by (instance) (workerscope_worker_limit)`); err != nil {
			last = err.Error()
			return false
		}
		if spawns, err = byInstance(api, `sum by (instance) (workerscope_worker_spawns_total)`); err != nil {
			last = err.Error()
			return false
		}
		if live, err = byInstance(api, `sum by (instance) (workerscope_worker_count)`); err != nil {
			last = err.Error()
			return false
		}
		last = fmt.Sprintf("limit series %v, spawns %v, live workers %v (instances' own spawns %v)", limits, spawns, live, own)
		// Every figure must have arrived: the collector writes to
		// Prometheus in batches, so the limit series (queried first) can
		// trail the others by one round.
		for _, m := range fleet {
			if spawns[m.id] != own[m.id] || live[m.id] != float64(m.sessions) || limits[m.id] == 0 {
				time.Sleep(200 * time.Millisecond)
				return false
			}
		}
		return true
	}, prom, gateway)

	// Each instance exactly once, under its own id, and nothing else.
	if len(limits) != fleetInstances {
		t.Errorf("count by (instance) (workerscope_worker_limit): %d instances %v, want %d %v", len(limits), limits, fleetInstances, ids)
	}
	for _, m := range fleet {
		if limits[m.id] != 1 {
			t.Errorf("instance %s: %v workerscope_worker_limit series, want 1", m.id, limits[m.id])
		}
	}
	if ti, err := byInstance(api, `count by (instance) (target_info{job="workerscope"})`); err != nil {
		t.Error(err)
	} else {
		for _, m := range fleet {
			if ti[m.id] != 1 {
				t.Errorf("target_info of instance %s: %v series, want 1 (all: %v)", m.id, ti[m.id], ti)
			}
		}
	}

	// Fleet totals are the sums of the instances.
	var wantSpawns, wantLive float64
	for _, m := range fleet {
		wantSpawns += own[m.id]
		wantLive += float64(m.sessions)
	}
	for q, want := range map[string]float64{
		`sum(workerscope_worker_spawns_total)`: wantSpawns,
		`sum(workerscope_worker_count)`:        wantLive,
	} {
		v, err := api.query(q)
		if err != nil || len(v) != 1 {
			t.Errorf("%s: %v %v", q, v, err)
			continue
		}
		if got, _ := strconv.ParseFloat(fmt.Sprint(v[0].Value[1]), 64); got != want {
			t.Errorf("%s = %v, want %v (the sum of the instances' own values)", q, got, want)
		}
	}
	t.Logf("fleet: instances %v, spawns by instance %v, live workers by instance %v", limits, spawns, live)

	// The agent with the wrong token: the gateway refused its pushes (the
	// agent logs the 401), and its instance is nowhere in Prometheus.
	var refused []string
	waitFor(t, 30*time.Second, "the intruder's agent to log the gateway's 401", func() bool {
		refused = failedExports(intruder.agent.output(), "otlp_http/gateway")
		return len(refused) > 0
	}, intruder.agent)
	if !strings.Contains(refused[0], "HTTP Status Code 401") {
		t.Errorf("the intruder's agent failed to export, but not with a 401 from the gateway: %s", refused[0])
	}
	for _, q := range []string{`workerscope_worker_limit`, `target_info`, `{__name__=~"workerscope_.+"}`} {
		if v, err := byInstance(api, fmt.Sprintf(`count by (instance) (%s)`, q)); err != nil {
			t.Error(err)
		} else if _, ok := v[intruder.id]; ok {
			t.Errorf("%s of the instance whose agent had a wrong token reached Prometheus: %v", q, v)
		}
	}
	// The others' pushes all went through, and Prometheus accepted every
	// push of the gateway.
	for _, m := range fleet {
		if f := failedExports(m.agent.output(), "otlp_http/gateway"); len(f) > 0 {
			t.Errorf("agent of instance %s failed to push to the gateway %d times. First: %s", m.id, len(f), f[0])
		}
	}
	if f := failedExports(gateway.output(), "otlp_http/prometheus"); len(f) > 0 {
		t.Errorf("the gateway's pushes to Prometheus failed %d times. First: %s", len(f), f[0])
	}

	// Nothing leaks: every instance stops its workers.
	for _, m := range all {
		m.app.stop(t, 20*time.Second)
	}
	var ps []string
	for p := range prefixes {
		ps = append(ps, p)
	}
	waitFor(t, 10*time.Second, "every worker process of every instance to be gone", func() bool {
		return len(workerMarkers(ps...)) == 0
	})
	t.Logf("fleet telemetry end-to-end took %s", time.Since(began).Round(100*time.Millisecond))
}
