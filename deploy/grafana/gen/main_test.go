package main

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// committed is the generated file, relative to this package's directory (where go test runs).
const committed = "../workerscope.json"

// metrics are the Prometheus names of workerscope's OTLP metrics after translation (docs/metrics.md),
// plus target_info and ALERTS. Every metric a query uses must be here.
var metrics = func() map[string]bool {
	m := map[string]bool{"target_info": true, "ALERTS": true}
	for _, n := range []string{
		// per worker
		"workerscope_worker_cpu_time_seconds_total",
		"workerscope_worker_cpu_utilization_ratio",
		"workerscope_worker_memory_usage_bytes",
		"workerscope_worker_memory_virtual_bytes",
		"workerscope_worker_thread_count",
		"workerscope_worker_file_descriptor_count",
		"workerscope_worker_uptime_seconds",
		"workerscope_worker_paging_faults_total",
		"workerscope_worker_idle_time_seconds",
		"workerscope_worker_zombie",
		"workerscope_worker_process_count",
		"workerscope_worker_defunct",
		"workerscope_worker_requests_total",
		"workerscope_worker_state",
		// pool and supervisor
		"workerscope_worker_count",
		"workerscope_worker_limit",
		"workerscope_worker_spawns_total",
		"workerscope_worker_spawn_failures_total",
		"workerscope_worker_exits_total",
		"workerscope_session_crash_looping",
		"workerscope_sse_client_count",
		"workerscope_sampler_errors_total",
		"workerscope_worker_lines_skipped_total",
		"workerscope_events_dropped_total",
		"workerscope_orphans_reaped_total",
		"workerscope_export_errors_total",
		"workerscope_profiling_upload_errors_total",
		// agent runs (GenAI)
		"workerscope_gen_ai_cost_total",
		"workerscope_gen_ai_events_skipped_total",
		"workerscope_session_budget_exceeded_total",
		"workerscope_session_gen_ai_cost",
		"workerscope_session_gen_ai_tokens",
		"workerscope_session_budget_utilization_ratio",
		// the supervisor process
		"process_cpu_time_seconds_total",
		"process_memory_usage_bytes",
		"process_memory_virtual_bytes",
		"process_thread_count",
		"process_unix_file_descriptor_count",
		"process_uptime_seconds",
		// Go runtime
		"go_memory_used_bytes",
		"go_memory_limit_bytes",
		"go_memory_allocated_bytes_total",
		"go_memory_allocations_total",
		"go_memory_gc_goal_bytes",
		"go_goroutine_count",
		"go_processor_limit",
		"go_config_gogc_percent",
	} {
		m[n] = true
	}
	for _, h := range []string{"workerscope_rpc_duration_seconds", "workerscope_rpc_cpu_time_seconds", "workerscope_run_duration_seconds",
		"workerscope_run_cpu_time_seconds", "workerscope_sampler_duration_seconds", "go_schedule_duration_seconds",
		"gen_ai_client_token_usage", "gen_ai_client_operation_duration_seconds", "workerscope_gen_ai_tool_duration_seconds",
		"workerscope_gen_ai_tool_cpu_time_seconds"} {
		for _, s := range []string{"_bucket", "_sum", "_count"} {
			m[h+s] = true
		}
	}
	return m
}()

// labels that share a metric prefix (they are not metric names).
var prefixedLabels = map[string]bool{"go_memory_type": true, "process_pid": true, "workerscope_budget": true,
	"workerscope_worker_id": true, "workerscope_worker_key": true, "workerscope_worker_state": true, "workerscope_exit_reason": true,
	"workerscope_limit_name": true, "workerscope_limit_enforcement": true, "workerscope_line_reason": true, "system_paging_fault_type": true,
	"rpc_system_name":      true,
	"gen_ai_provider_name": true, "gen_ai_request_model": true, "gen_ai_token_type": true, "gen_ai_tool_name": true}

// The dashboard's variables: data sources, then Prometheus query variables.
var wantVars = map[string]string{
	"prometheus_datasource": "datasource",
	"pyroscope_datasource":  "datasource",
	"job":                   "query",
	"host":                  "query",
	"instance":              "query",
	"worker_key":            "query",
}

var wantRows = []string{"Pool overview", "Firing alerts", "Top workers", "Per-worker detail", "RPC", "The supervisor itself", "Supervisor CPU profile"}

func TestCommittedDashboardIsFresh(t *testing.T) {
	got, err := render()
	if err != nil {
		t.Fatal(err)
	}
	again, err := render()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, again) {
		t.Fatal("two renders differ: the output must be stable")
	}
	want, err := os.ReadFile(committed)
	if err != nil {
		t.Fatalf("%v: run make dashboards", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("deploy/grafana/workerscope.json is stale: run make dashboards and commit the result")
	}
	if !bytes.HasSuffix(got, []byte("}\n")) || !bytes.HasPrefix(got, []byte("{\n  \"")) {
		t.Error("want pretty-printed JSON with a trailing newline")
	}
}

// dash is the part of the dashboard JSON model the checks read.
type dash struct {
	Uid        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

type panel struct {
	Type        string   `json:"type"`
	ID          int      `json:"id"`
	Title       string   `json:"title"`
	Description string   `json:"description"`
	Datasource  *dsRef   `json:"datasource"`
	Targets     []target `json:"targets"`
	Panels      []panel  `json:"panels"`
	GridPos     struct {
		H, W, X, Y int
	} `json:"gridPos"`
}

type dsRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type target struct {
	Datasource    *dsRef `json:"datasource"`
	RefID         string `json:"refId"`
	Expr          string `json:"expr"`
	QueryType     string `json:"queryType"`
	ProfileTypeID string `json:"profileTypeId"`
	LabelSelector string `json:"labelSelector"`
}

type variable struct {
	Type       string `json:"type"`
	Name       string `json:"name"`
	Query      any    `json:"query"`
	Datasource *dsRef `json:"datasource"`
	Multi      bool   `json:"multi"`
	IncludeAll bool   `json:"includeAll"`
	AllValue   string `json:"allValue"`
}

func load(t *testing.T) dash {
	t.Helper()
	b, err := render()
	if err != nil {
		t.Fatal(err)
	}
	var d dash
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// leaves returns the dashboard's panels that are not rows, nested ones included.
func leaves(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		if p.Type == "row" {
			out = append(out, leaves(p.Panels)...)
			continue
		}
		out = append(out, p)
	}
	return out
}

func TestVariables(t *testing.T) {
	d := load(t)
	seen := map[string]variable{}
	for _, v := range d.Templating.List {
		seen[v.Name] = v
		want, ok := wantVars[v.Name]
		if !ok {
			t.Errorf("unexpected variable %q", v.Name)
			continue
		}
		if v.Type != want {
			t.Errorf("variable %s: type %q, want %q", v.Name, v.Type, want)
		}
		// job and instance: every series has them (dashboard-linter wants .+); host_name and
		// workerscope_worker_key may be absent, so All must match series without them.
		wantAll := ".*"
		if v.Name == "job" || v.Name == "instance" {
			wantAll = ".+"
		}
		if v.IncludeAll && v.AllValue != wantAll {
			t.Errorf("variable %s: allValue %q, want %s", v.Name, v.AllValue, wantAll)
		}
		if v.Type == "query" {
			if v.Datasource == nil || v.Datasource.UID != "${prometheus_datasource}" {
				t.Errorf("variable %s: want the ${prometheus_datasource} data source, got %+v", v.Name, v.Datasource)
			}
			q, _ := v.Query.(string)
			if q == "" {
				t.Errorf("variable %s: empty query", v.Name)
			}
		}
	}
	for name := range wantVars {
		if _, ok := seen[name]; !ok {
			t.Errorf("variable %s missing", name)
		}
	}
	if q := seen["prometheus_datasource"].Query; q != "prometheus" {
		t.Errorf("prometheus_datasource variable: query %v, want prometheus", q)
	}
	if q := seen["pyroscope_datasource"].Query; q != "grafana-pyroscope-datasource" {
		t.Errorf("pyroscope_datasource variable: query %v, want grafana-pyroscope-datasource", q)
	}
	for _, name := range []string{"job", "host", "instance", "worker_key"} {
		if v := seen[name]; !v.Multi || !v.IncludeAll {
			t.Errorf("variable %s: want multi-select with All", name)
		}
	}
	if q, _ := seen["instance"].Query.(string); !strings.Contains(q, "target_info") || !strings.Contains(q, "$host") {
		t.Errorf("instance variable must be filtered by host through target_info: %q", q)
	}
}

func TestPanels(t *testing.T) {
	d := load(t)
	var rows []string
	for _, p := range d.Panels {
		if p.Type == "row" {
			rows = append(rows, p.Title)
		}
	}
	for _, want := range wantRows {
		found := false
		for _, r := range rows {
			found = found || strings.HasPrefix(r, want)
		}
		if !found {
			t.Errorf("row %q missing (rows: %q)", want, rows)
		}
	}

	ids := map[int]bool{}
	pyroscope := 0
	for _, p := range d.Panels {
		if ids[p.ID] || p.ID == 0 {
			t.Errorf("panel %q: id %d missing or not unique", p.Title, p.ID)
		}
		ids[p.ID] = true
	}
	for _, p := range leaves(d.Panels) {
		if p.Title == "" || strings.TrimSpace(p.Description) == "" {
			t.Errorf("panel %d %q: want a title and a description", p.ID, p.Title)
		}
		if p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 || p.GridPos.H <= 0 {
			t.Errorf("panel %q: bad grid position %+v", p.Title, p.GridPos)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q: no queries", p.Title)
		}
		if p.Datasource == nil {
			t.Errorf("panel %q: no data source", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %q: refId %q missing or repeated", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
			if tg.Datasource == nil {
				t.Errorf("panel %q: a query without data source", p.Title)
				continue
			}
			switch tg.Datasource.Type {
			case "prometheus":
				if tg.Datasource.UID != "${prometheus_datasource}" {
					t.Errorf("panel %q: Prometheus query uses data source %q, want ${prometheus_datasource}", p.Title, tg.Datasource.UID)
				}
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("panel %q: empty expr", p.Title)
				}
			case "grafana-pyroscope-datasource":
				pyroscope++
				if tg.Datasource.UID != "${pyroscope_datasource}" {
					t.Errorf("panel %q: Pyroscope query uses data source %q, want ${pyroscope_datasource}", p.Title, tg.Datasource.UID)
				}
				if tg.QueryType != "profile" || tg.ProfileTypeID != cpuProfileType || !strings.Contains(tg.LabelSelector, `service_name=~"${job:regex}"`) {
					t.Errorf("panel %q: Pyroscope query %+v", p.Title, tg)
				}
			default:
				t.Errorf("panel %q: query with data source type %q", p.Title, tg.Datasource.Type)
			}
			if p.Datasource != nil && *p.Datasource != *tg.Datasource {
				t.Errorf("panel %q: panel data source %+v differs from its query's %+v", p.Title, p.Datasource, tg.Datasource)
			}
		}
		if p.Type == "flamegraph" && (p.Datasource == nil || p.Datasource.UID != "${pyroscope_datasource}") {
			t.Errorf("flame graph %q must use ${pyroscope_datasource}", p.Title)
		}
	}
	if pyroscope != 1 {
		t.Errorf("want one Pyroscope query, have %d", pyroscope)
	}
}

var (
	varRef   = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)`)
	ident    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	strLit   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	rangeSel = regexp.MustCompile(`\[([^\]]*)\]`)
)

// counter reports whether a metric is a counter or a histogram's series: only rate() or increase() of
// it makes sense.
func counter(name string) bool {
	if strings.HasSuffix(name, "_total") {
		return true
	}
	for _, h := range []string{"workerscope_rpc_duration_seconds_", "workerscope_sampler_duration_seconds_", "go_schedule_duration_seconds_",
		"gen_ai_client_", "workerscope_gen_ai_tool_"} {
		if strings.HasPrefix(name, h) {
			return true
		}
	}
	return false
}

// exprs returns every PromQL expression of the dashboard: panel queries and query variables.
func exprs(t *testing.T, d dash) []string {
	var out []string
	for _, p := range leaves(d.Panels) {
		for _, tg := range p.Targets {
			if tg.Expr != "" {
				out = append(out, tg.Expr)
			}
		}
	}
	for _, v := range d.Templating.List {
		if q, ok := v.Query.(string); ok && v.Type == "query" {
			out = append(out, q)
		}
	}
	if len(out) == 0 {
		t.Fatal("no expressions")
	}
	return out
}

func TestExpressions(t *testing.T) {
	d := load(t)
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	used := map[string]bool{}
	for _, e := range exprs(t, d) {
		// Variables: defined ones, and only the two time macros the end-to-end test substitutes.
		for _, m := range varRef.FindAllStringSubmatch(e, -1) {
			name := m[1]
			switch {
			case name == "__rate_interval" || name == "__range":
			case strings.HasPrefix(name, "__"):
				t.Errorf("%s: macro $%s (use $__rate_interval or $__range)", e, name)
			case !vars[name]:
				t.Errorf("%s: undefined variable $%s", e, name)
			}
		}
		if strings.Contains(e, "[[") {
			t.Errorf("%s: deprecated [[var]] syntax", e)
		}
		// Range selectors use the time macros, not fixed durations.
		for _, m := range rangeSel.FindAllStringSubmatch(e, -1) {
			if m[1] != "$__rate_interval" && m[1] != "$__range" {
				t.Errorf("%s: range [%s], want [$__rate_interval] or [$__range]", e, m[1])
			}
		}
		// Metric names: the contract's only; counters and histogram series only inside rate() or
		// increase().
		bare := strLit.ReplaceAllString(e, `""`)
		for _, loc := range ident.FindAllStringIndex(bare, -1) {
			id := bare[loc[0]:loc[1]]
			if !hasMetricPrefix(id) || prefixedLabels[id] {
				continue
			}
			if !metrics[id] {
				t.Errorf("%s: unknown metric %s", e, id)
			}
			used[id] = true
			before := strings.TrimRight(bare[:loc[0]], " ")
			if counter(id) && !strings.HasSuffix(before, "rate(") && !strings.HasSuffix(before, "increase(") {
				t.Errorf("%s: counter %s outside rate()/increase()", e, id)
			}
		}
		if strings.Count(e, "(") != strings.Count(e, ")") || strings.Count(e, "{") != strings.Count(e, "}") {
			t.Errorf("%s: unbalanced brackets", e)
		}
	}
	var unused []string
	for m := range metrics {
		if !used[m] {
			unused = append(unused, m)
		}
	}
	sort.Strings(unused)
	t.Logf("metrics the dashboard does not show: %s", strings.Join(unused, " "))
}

func hasMetricPrefix(id string) bool {
	for _, p := range []string{"workerscope_", "process_", "go_", "gen_ai_", "target_info", "ALERTS"} {
		if strings.HasPrefix(id, p) {
			return true
		}
	}
	return false
}

func TestUnescapeHTML(t *testing.T) {
	for in, want := range map[string]string{
		`"a \u003e 0 \u0026\u0026 b \u003c 1"`: `"a > 0 && b < 1"`,
		`"\\u003e"`:                            `"\\u003e"`, // an escaped backslash, then text
		`"\"\u003e\n"`:                         `"\">\n"`,
		`"\u00e9"`:                             `"\u00e9"`,
	} {
		if got := string(unescapeHTML([]byte(in))); got != want {
			t.Errorf("unescapeHTML(%s) = %s, want %s", in, got, want)
		}
	}
}
