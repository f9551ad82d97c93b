//go:build linux

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// promVersion is the Prometheus the Makefile builds (PROM_VERSION).
const promVersion = "v0.316.0"

// promBinary finds a binary of the Prometheus build: $env, else the
// Makefile's cache (`make prometheus`). Without it the test skips, unless
// WORKERSCOPE_E2E=required (as in CI), where that is a failure.
func promBinary(t testing.TB, env, name string) string {
	t.Helper()
	path := os.Getenv(env)
	if path == "" {
		home, _ := os.UserHomeDir()
		path = filepath.Join(home, ".cache", "workerscope", "prometheus-"+promVersion, name)
	}
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("WORKERSCOPE_E2E") == "required" {
			t.Fatalf("%s binary %s: %v (run make prometheus)", name, path, err)
		}
		t.Skipf("%s binary %s not built (make prometheus); skipping", name, path)
	}
	return path
}

func rulesFile(t testing.TB) string {
	return filepath.Join(repoRoot(t), "deploy", "prometheus", "workerscope.rules.yaml")
}

// TestPrometheusRuleUnitTests runs promtool on the shipped rules and their
// unit tests (what `make rules-test` runs), so `go test` covers them too.
func TestPrometheusRuleUnitTests(t *testing.T) {
	promtool := promBinary(t, "WORKERSCOPE_PROMTOOL", "promtool")
	dir := filepath.Dir(rulesFile(t))
	for _, args := range [][]string{
		{"check", "rules", rulesFile(t), filepath.Join(dir, "testdata", "memory-overrides.rules.yaml")},
		{"test", "rules", filepath.Join(dir, "workerscope.rules.test.yaml")},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// promAPI is a client of Prometheus's HTTP API.
type promAPI struct{ base string }

// get decodes the data of a successful API answer into out.
func (p promAPI) get(path string, params url.Values, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u := p.base + path
	if params != nil {
		u += "?" + params.Encode()
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var env struct {
		Status    string          `json:"status"`
		Data      json.RawMessage `json:"data"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return fmt.Errorf("%s: %d %.300s", path, resp.StatusCode, b)
	}
	if env.Status != "success" {
		return fmt.Errorf("%s: %s: %s", path, env.ErrorType, env.Error)
	}
	return json.Unmarshal(env.Data, out)
}

type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

type promQueryResult struct {
	ResultType string          `json:"resultType"`
	Result     json.RawMessage `json:"result"`
}

// query runs an instant query and returns its vector (a scalar or string
// result is one sample without labels).
func (p promAPI) query(expr string) ([]promSample, error) {
	var r promQueryResult
	if err := p.get("/api/v1/query", url.Values{"query": {expr}}, &r); err != nil {
		return nil, err
	}
	switch r.ResultType {
	case "vector":
		var v []promSample
		err := json.Unmarshal(r.Result, &v)
		return v, err
	case "scalar", "string":
		var v [2]any
		if err := json.Unmarshal(r.Result, &v); err != nil {
			return nil, err
		}
		return []promSample{{Value: v}}, nil
	}
	return nil, fmt.Errorf("result type %q", r.ResultType)
}

type promAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"`
	Value       string            `json:"value"`
}

func (p promAPI) alerts() ([]promAlert, error) {
	var r struct {
		Alerts []promAlert `json:"alerts"`
	}
	err := p.get("/api/v1/alerts", nil, &r)
	return r.Alerts, err
}

// firing returns the firing alerts named name.
func firing(alerts []promAlert, name string) []promAlert {
	var out []promAlert
	for _, a := range alerts {
		if a.Labels["alertname"] == name && a.State == "firing" {
			out = append(out, a)
		}
	}
	return out
}

type promRule struct {
	Name      string `json:"name"`
	Type      string `json:"type"`
	Health    string `json:"health"`
	LastError string `json:"lastError"`
	Query     string `json:"query"`
}

func (p promAPI) rules() ([]promRule, error) {
	var r struct {
		Groups []struct {
			Rules []promRule `json:"rules"`
		} `json:"groups"`
	}
	if err := p.get("/api/v1/rules", nil, &r); err != nil {
		return nil, err
	}
	var out []promRule
	for _, g := range r.Groups {
		out = append(out, g.Rules...)
	}
	return out, nil
}

var forRE = regexp.MustCompile(`(?m)^(\s+for:\s*)\S+`)

// startPrometheus runs Prometheus 3 on loopback with its OTLP receiver and
// the shipped rules, their for: durations shortened to forDur, evaluated
// every second.
func startPrometheus(t testing.TB, forDur string) (*proc, promAPI) {
	t.Helper()
	bin := promBinary(t, "WORKERSCOPE_PROMETHEUS", "prometheus")
	dir := t.TempDir()
	rules, err := os.ReadFile(rulesFile(t))
	if err != nil {
		t.Fatal(err)
	}
	rulesPath := filepath.Join(dir, "workerscope.rules.yaml")
	if err := os.WriteFile(rulesPath, forRE.ReplaceAll(rules, []byte("${1}"+forDur)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("global:\n  evaluation_interval: 1s\nrule_files:\n  - %q\n", rulesPath)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	p := start(t, bin, nil,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--web.enable-otlp-receiver")
	api := promAPI{base: "http://" + addr}
	waitFor(t, 60*time.Second, "Prometheus to be ready", func() bool {
		resp, err := http.Get(api.base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, p)
	return p, api
}

// startCollectorToPrometheus runs the shipped config plus the Prometheus
// overlay, pushing metrics to otlpURL.
func startCollectorToPrometheus(t testing.TB, grpcAddr, otlpURL string) *proc {
	t.Helper()
	return startOtelcol(t, []string{
		"OTELCOL_GRPC_ENDPOINT=" + grpcAddr,
		"OTELCOL_HTTP_ENDPOINT=" + freePort(t),
		"OTELCOL_PROMETHEUS_ENDPOINT=" + otlpURL,
		"OTELCOL_BATCH_TIMEOUT=200ms",
		"OTELCOL_METRICS_LEVEL=none", // no listener on 8888
	}, "otel-collector.yaml", "otel-collector.prometheus.yaml")
}

// TestPrometheusEndToEnd: workerscope (demo workers) → the collector
// (shipped config + Prometheus overlay) → Prometheus 3's OTLP receiver with
// the shipped alert rules. Real faults fire real alerts: a worker that
// ignores SIGTERM past the idle TTL (WorkerscopeWorkerZombie) and a session
// whose worker crashes on every command (WorkerscopeWorkerCrashLooping).
// Then every rule evaluates without error, every metric of the contract
// arrived under its documented Prometheus name, and every query of the
// Grafana dashboard returns data.
func TestPrometheusEndToEnd(t *testing.T) {
	began := time.Now()
	collectorBinary(t)
	promBinary(t, "WORKERSCOPE_PROMETHEUS", "prometheus")

	prom, api := startPrometheus(t, "5s")
	grpcAddr := freePort(t)
	col := startCollectorToPrometheus(t, grpcAddr, api.base+"/api/v1/otlp")
	// Generous per-worker limits, so that their metrics (reported only when
	// set) arrive too.
	a := startAppArgs(t, grpcAddr, []string{"OTEL_METRIC_EXPORT_INTERVAL=1000"},
		"--idle-ttl", "2s", "--stop-grace", "10m",
		"--worker-memory-max", "4GiB", "--worker-pids-max", "4096", "--worker-cpu-max", "2",
		"--session-spend-budget-usd", "100") // so that the sessions' budget share is reported
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, p := range []*proc{prom, col, a.proc} {
			t.Logf("output of %s:\n%s", filepath.Base(p.cmd.Path), tail(p.output(), 6000))
		}
		if b, err := rawGet(api.base + "/api/v1/alerts"); err == nil {
			t.Logf("alerts: %s", b)
		}
	})

	// Traffic, so that the RPC histograms have data, and the zombie: it
	// ignores SIGTERM, idles past --idle-ttl, and the 10-minute stop grace
	// keeps it alive.
	a.rpc(t, "busy", `{"type":"prompt","message":"work","cpu_ms":300,"mem_mib":32,"events":3}`)
	a.rpc(t, "busy", `{"type":"get_state"}`)
	// An agent run (the demo worker streams pi's model and tool events), on
	// the session that stays alive, so its GenAI series last.
	a.rpc(t, "stuck", `{"type":"prompt","agent_events":true,"turns":2,"cpu_ms":200}`)
	waitFor(t, 30*time.Second, "the agent run to end", func() bool {
		return a.workers(t)["stuck"].State == "idle"
	})
	a.rpc(t, "stuck", `{"type":"ignore_sigterm"}`)
	stuck := a.workers(t)["stuck"]

	// The crash loop: one session whose worker crashes on every command.
	// Between crashes the session is in back-off, which a request with a
	// short deadline does not wait out (503 backoff): keep sending until
	// both alerts fire.
	var alerts []promAlert
	var zombie, loop []promAlert
	codes := map[int]int{}
	faultsAt := time.Now()
	firstFiring := map[string]time.Duration{}
	waitFor(t, 3*time.Minute, "WorkerscopeWorkerZombie and WorkerscopeWorkerCrashLooping to fire", func() bool {
		code, _ := a.do(t, "POST", "/api/sessions/crashy/rpc?timeout=1s", `{"type":"crash","code":3,"message":"e2e crash"}`)
		codes[code]++
		var err error
		if alerts, err = api.alerts(); err != nil {
			t.Logf("alerts: %v", err)
			return false
		}
		zombie, loop = firing(alerts, "WorkerscopeWorkerZombie"), firing(alerts, "WorkerscopeWorkerCrashLooping")
		for _, al := range alerts {
			if _, ok := firstFiring[al.Labels["alertname"]]; !ok && al.State == "firing" {
				firstFiring[al.Labels["alertname"]] = time.Since(faultsAt).Round(100 * time.Millisecond)
			}
		}
		if len(zombie) == 0 || len(loop) == 0 {
			time.Sleep(200 * time.Millisecond)
			return false
		}
		return true
	}, prom, col, a.proc)
	t.Logf("setup took %s; crash commands answered %v; alerts firing this long after the faults began: %v",
		faultsAt.Sub(began).Round(100*time.Millisecond), codes, firstFiring)

	// The zombie alert names the worker and its supervisor.
	var instance string
	for _, al := range zombie {
		l := al.Labels
		if l["workerscope_worker_key"] != "stuck" {
			t.Errorf("zombie alert for another worker: %v", l)
			continue
		}
		instance = l["instance"]
		if l["job"] != "workerscope" || l["instance"] == "" || l["workerscope_worker_id"] != stuck.ID ||
			l["process_pid"] != strconv.Itoa(stuck.PID) || l["severity"] != "warning" {
			t.Errorf("zombie alert labels %v; want job workerscope, an instance, workerscope_worker_id %s, process_pid %d, severity warning", l, stuck.ID, stuck.PID)
		}
		if !strings.Contains(al.Annotations["description"], stuck.ID) ||
			al.Annotations["runbook_url"] != "https://github.com/workerscope/workerscope/blob/main/docs/alerts.md#workerscopeworkerzombie" {
			t.Errorf("zombie alert annotations %v", al.Annotations)
		}
	}
	for _, al := range loop {
		if al.Labels["job"] != "workerscope" || al.Labels["instance"] != instance || al.Labels["scope"] == "" {
			t.Errorf("crash-loop alert labels %v; want job workerscope, instance %s, a scope", al.Labels, instance)
		}
	}
	if v, err := api.query(`workerscope_session_crash_looping`); err != nil || len(v) == 0 {
		t.Errorf("workerscope_session_crash_looping: %v %v", v, err)
	}
	// Nothing else is wrong: the supervisor reports, workers are small, the
	// pool is nearly empty.
	for _, name := range []string{"WorkerscopeAbsent", "WorkerscopeWorkerMemoryHigh", "WorkerscopePoolSaturated"} {
		if f := firing(alerts, name); len(f) > 0 {
			t.Errorf("%s fired: %v", name, f)
		}
	}

	// Prometheus accepted every push: it rejects a whole OTLP request (400,
	// which the collector drops) when one sample in it is out of order or a
	// duplicate, so one bad series loses every metric of that export.
	if rejected := failedExports(col.output(), "otlp_http/prometheus"); len(rejected) > 0 {
		t.Errorf("the collector's pushes to Prometheus failed %d times; whole exports were lost. First: %s", len(rejected), rejected[0])
	}

	// Every rule evaluates cleanly against the real series (no matching
	// errors, no bad templates).
	rules, err := api.rules()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		if r.Health != "ok" {
			t.Errorf("rule %s (%s): health %q: %s", r.Name, r.Type, r.Health, r.LastError)
		}
	}
	ruleNames := map[string]bool{}
	for _, r := range rules {
		ruleNames[r.Name] = true
	}
	for _, want := range []string{"WorkerscopeWorkerZombie", "WorkerscopeWorkerCrashLooping", "WorkerscopeWorkerMemoryHigh",
		"WorkerscopeWorkerBusyWhileIdle", "WorkerscopeDefunctProcesses", "WorkerscopePoolSaturated",
		"WorkerscopeTelemetryExportFailing", "WorkerscopeSamplerErrors", "WorkerscopeAbsent"} {
		if !ruleNames[want] {
			t.Errorf("alert %s not loaded", want)
		}
	}
	var names []string
	for _, al := range alerts {
		names = append(names, al.Labels["alertname"]+"/"+al.State)
	}
	t.Logf("alerts: %v", names)

	// The names that arrived, for the docs.
	var metricNames []string
	if err := api.get("/api/v1/label/__name__/values", nil, &metricNames); err != nil {
		t.Fatal(err)
	}
	namesFile := filepath.Join(t.TempDir(), "prometheus-metric-names.txt")
	_ = os.WriteFile(namesFile, []byte(strings.Join(metricNames, "\n")+"\n"), 0o644)
	t.Logf("%d metric names in Prometheus (also in %s):\n%s", len(metricNames), namesFile, strings.Join(metricNames, "\n"))
	for _, q := range []string{`target_info`, `workerscope_worker_cpu_time_seconds_total{workerscope_worker_key="stuck"}`} {
		if v, err := api.query(q); err == nil && len(v) > 0 {
			t.Logf("labels of %s: %v", q, v[0].Metric)
		}
	}

	// Every metric of the contract (docs/metrics.md), under its Prometheus name.
	contract := documentedPromNames(t)
	if len(contract) == 0 {
		t.Fatal("no Prometheus names found in docs/metrics.md")
	}
	for _, n := range contract {
		if !slices.Contains(metricNames, n) {
			t.Errorf("documented Prometheus name %s did not arrive", n)
		}
	}

	t.Run("dashboard queries", func(t *testing.T) {
		path := filepath.Join(repoRoot(t), "deploy", "grafana", "workerscope.json")
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("the Grafana dashboard %s is missing: %v (every one of its queries must run against real data here)", path, err)
		}
		qs, err := dashboardQueries(b)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(qs) == 0 {
			t.Fatalf("%s: no queries found", path)
		}
		for _, q := range qs {
			v, err := api.query(q.expr)
			switch {
			case err != nil:
				t.Errorf("%s: %s: %v", q.where, q.expr, err)
			case len(v) == 0:
				t.Errorf("%s: %s: no data", q.where, q.expr)
			}
		}
		t.Logf("%d dashboard queries ran", len(qs))
	})
	t.Logf("end-to-end with Prometheus took %s", time.Since(began).Round(time.Second))
}

func rawGet(u string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// documentedPromNames reads the Prometheus column of the contract table in
// docs/metrics.md; a histogram is checked by its _count series.
func documentedPromNames(t testing.TB) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot(t), "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	col := -1
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "|") {
			col = -1
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if col < 0 {
			col = slices.Index(cells, "Prometheus")
			if col >= 0 && !slices.Contains(cells, "kind") {
				col = -1
			}
			continue
		}
		if col >= len(cells) || !strings.HasPrefix(cells[col], "`") {
			continue
		}
		name := strings.Trim(cells[col], "`")
		if slices.Contains(cells, "Histogram") {
			name += "_count"
		}
		out = append(out, name)
	}
	return out
}

// dashQuery is one PromQL query of a dashboard, ready to run.
type dashQuery struct{ where, expr string }

var (
	labelValuesRE = regexp.MustCompile(`^\s*label_values\((.*)\)\s*$`)
	queryResultRE = regexp.MustCompile(`^\s*query_result\((.*)\)\s*$`)
	metricsRE     = regexp.MustCompile(`^\s*metrics\((.*)\)\s*$`)
	// Variables: $name, ${name}, ${name:format}, [[name]].
	dashVarRE = regexp.MustCompile(`\$\{[A-Za-z_][A-Za-z0-9_]*(?::[^}]*)?\}|\$[A-Za-z_][A-Za-z0-9_]*|\[\[[A-Za-z_][A-Za-z0-9_]*(?::[^\]]*)?\]\]`)
)

// dashboardQueries returns every PromQL query of a Grafana dashboard: each
// "expr" string anywhere in it (panels, rows' nested panels, library
// panels inlined) and the query (or definition) of each templating
// variable of type query, with label_values(metric, label) run as metric.
// Grafana's built-in intervals become fixed durations and every variable
// matches anything (.*).
func dashboardQueries(doc []byte) ([]dashQuery, error) {
	var root any
	if err := json.Unmarshal(doc, &root); err != nil {
		return nil, err
	}
	var out []dashQuery
	seen := map[string]bool{}
	add := func(where, expr string) {
		expr = substituteDashVars(expr)
		if strings.TrimSpace(expr) == "" || seen[expr] {
			return
		}
		seen[expr] = true
		out = append(out, dashQuery{where, expr})
	}
	var walk func(where string, v any)
	walk = func(where string, v any) {
		switch v := v.(type) {
		case map[string]any:
			keys := make([]string, 0, len(v))
			for k := range v {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if s, ok := v[k].(string); ok && k == "expr" {
					add(where+"."+k, s)
				}
			}
			if v["type"] == "query" && strings.Contains(where, "templating") {
				for _, k := range []string{"query", "definition"} {
					q := v[k]
					if m, ok := q.(map[string]any); ok { // newer variable format: {"query": "...", "refId": ...}
						q = m["query"]
					}
					if s, ok := q.(string); ok {
						if e := variableQuery(s); e != "" {
							add(fmt.Sprintf("%s(variable %v).%s", where, v["name"], k), e)
						}
					}
				}
			}
			for _, k := range keys {
				walk(where+"."+k, v[k])
			}
		case []any:
			for i, e := range v {
				walk(fmt.Sprintf("%s[%d]", where, i), e)
			}
		}
	}
	walk("", root)
	return out, nil
}

// variableQuery turns a Grafana Prometheus variable query into PromQL.
func variableQuery(s string) string {
	if m := labelValuesRE.FindStringSubmatch(s); m != nil {
		arg := strings.TrimSpace(m[1])
		i := strings.LastIndex(arg, ",")
		if i < 0 { // label_values(label): any series with the label
			return "{" + arg + `!=""}`
		}
		return strings.TrimSpace(arg[:i])
	}
	if m := queryResultRE.FindStringSubmatch(s); m != nil {
		return m[1]
	}
	if m := metricsRE.FindStringSubmatch(s); m != nil {
		return `{__name__=~"` + strings.Trim(strings.TrimSpace(m[1]), `"`) + `"}`
	}
	if strings.HasPrefix(strings.TrimSpace(s), "label_names(") {
		return ""
	}
	return s
}

var builtinDashVars = strings.NewReplacer(
	"${__rate_interval}", "1m", "$__rate_interval", "1m",
	"${__interval_ms}", "15000", "$__interval_ms", "15000",
	"${__interval}", "15s", "$__interval", "15s",
	"${__range_s}", "300", "$__range_s", "300",
	"${__range_ms}", "300000", "$__range_ms", "300000",
	"${__range}", "5m", "$__range", "5m",
)

func substituteDashVars(expr string) string {
	return dashVarRE.ReplaceAllString(builtinDashVars.Replace(expr), ".*")
}

// TestPrometheusDashboardQueryWalker checks the dashboard walker on a small
// fixture: nested rows, targets, templating variables of every kind.
func TestPrometheusDashboardQueryWalker(t *testing.T) {
	fixture := `{
	  "panels": [
	    {"type": "stat", "targets": [{"expr": "sum(up{job=~\"$job\"})", "refId": "A"}]},
	    {"type": "row", "panels": [
	      {"type": "timeseries", "targets": [
	        {"expr": "rate(x_total{instance=~\"${instance}\", k=~\"${k:regex}\"}[$__rate_interval])"},
	        {"expr": "increase(y_total[$__range]) / $__interval_ms"},
	        {"expr": "sum(up{job=~\"$job\"})"}
	      ]}
	    ]}
	  ],
	  "templating": {"list": [
	    {"type": "datasource", "name": "datasource", "query": "prometheus"},
	    {"type": "custom", "name": "c", "query": "a,b"},
	    {"type": "query", "name": "job", "query": "label_values(workerscope_worker_count, job)", "definition": "label_values(workerscope_worker_count, job)"},
	    {"type": "query", "name": "instance", "query": {"query": "label_values(target_info{job=~\"$job\", host_name=~\"$host\"}, instance)", "refId": "V"}},
	    {"type": "query", "name": "k", "query": "label_values(workerscope_worker_key)"},
	    {"type": "query", "name": "r", "query": "query_result(topk(3, up))"},
	    {"type": "query", "name": "m", "query": "metrics(workerscope_.*)"},
	    {"type": "query", "name": "n", "query": "label_names()"}
	  ]}
	}`
	qs, err := dashboardQueries([]byte(fixture))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, q := range qs {
		got = append(got, q.expr)
	}
	want := []string{
		`sum(up{job=~".*"})`,
		`rate(x_total{instance=~".*", k=~".*"}[1m])`,
		`increase(y_total[5m]) / 15000`,
		`workerscope_worker_count`,
		`target_info{job=~".*", host_name=~".*"}`,
		`{workerscope_worker_key!=""}`,
		`topk(3, up)`,
		`{__name__=~"workerscope_.*"}`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("queries:\n got %q\nwant %q", got, want)
	}
	for _, q := range qs {
		if q.where == "" {
			t.Errorf("query %s without a location", q.expr)
		}
	}
	if _, err := dashboardQueries([]byte("{")); err == nil {
		t.Error("bad JSON accepted")
	}
}
