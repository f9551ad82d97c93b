package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/grafanapyroscope"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/statetimeline"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

func main() {
	out := flag.String("o", "deploy/grafana/workerscope.json", "output path")
	flag.Parse()
	b, err := render()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

// render returns the dashboard JSON: indented, without HTML escaping (PromQL has < > &), newline-terminated.
// The same code always renders the same bytes (no maps with random order reach the output unsorted,
// no timestamps).
func render() ([]byte, error) {
	d, err := build()
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	// The SDK's MarshalJSON methods call json.Marshal, which escapes < > & as \u003c...; undo that so the
	// file reads like PromQL, then indent.
	raw = unescapeHTML(raw)
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return nil, err
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

// unescapeHTML turns the \u003c, \u003e and \u0026 escapes of JSON text back into < > &, leaving every
// other escape (an escaped backslash followed by "u003c" included) as it is.
func unescapeHTML(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' || i+1 >= len(b) {
			out = append(out, b[i])
			continue
		}
		if b[i+1] == 'u' && i+6 <= len(b) {
			switch string(b[i+2 : i+6]) {
			case "003c":
				out = append(out, '<')
				i += 5
				continue
			case "003e":
				out = append(out, '>')
				i += 5
				continue
			case "0026":
				out = append(out, '&')
				i += 5
				continue
			}
		}
		out = append(out, b[i], b[i+1]) // any other escape, kept whole
		i++
	}
	return out
}

const (
	// Data source variables.
	promVar = "prometheus_datasource"
	pyroVar = "pyroscope_datasource"

	// sel filters series of the chosen service and supervisor instances; the instance variable is already
	// restricted to the chosen hosts (series carry job and instance only; host_name is on target_info).
	sel = `job=~"$job", instance=~"$instance"`
	// wsel also filters per-worker series by session key.
	wsel = sel + `, workerscope_worker_key=~"$worker_key"`

	// CPU profile type of the Go Pyroscope client (pyroscope-go).
	cpuProfileType = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
)

var (
	promDS = common.DataSourceRef{Type: ptr("prometheus"), Uid: ptr("${" + promVar + "}")}
	pyroDS = common.DataSourceRef{Type: ptr("grafana-pyroscope-datasource"), Uid: ptr("${" + pyroVar + "}")}

	// expand replaces the selector placeholders of an expression: {S} and {S, ...} by the supervisor
	// selector, {W} and {W, ...} by the per-worker one.
	expand = strings.NewReplacer("{W", "{"+wsel, "{S", "{"+sel).Replace
)

func ptr[T any](v T) *T { return &v }

// q is one Prometheus query of a panel: a PromQL expression with placeholders (see expand) and a legend.
type q struct{ expr, legend string }

// Query kinds: range queries for time series, instant queries for stats and tables.
type kind int

const (
	rangeQuery kind = iota
	instantQuery
	tableQuery
)

func promTargets(k kind, qs ...q) []cog.Builder[variants.Dataquery] {
	var ts []cog.Builder[variants.Dataquery]
	for i, x := range qs {
		b := prometheus.NewDataqueryBuilder().
			Datasource(promDS).
			RefId(string(rune('A' + i))).
			Expr(expand(x.expr)).
			LegendFormat(x.legend)
		switch k {
		case rangeQuery:
			b = b.Range()
		case instantQuery:
			b = b.Instant()
		case tableQuery:
			b = b.Instant().Format(prometheus.PromQueryFormatTable)
		}
		ts = append(ts, b)
	}
	return ts
}

func legend() *common.VizLegendOptionsBuilder {
	return common.NewVizLegendOptionsBuilder().
		DisplayMode(common.LegendDisplayModeList).
		Placement(common.LegendPlacementBottom).
		ShowLegend(true)
}

func tooltip() *common.VizTooltipOptionsBuilder {
	return common.NewVizTooltipOptionsBuilder().Mode(common.TooltipDisplayModeMulti).Sort(common.SortOrderDescending)
}

// thresholds: green below warn, orange from warn, red from crit (warn <= 0 leaves orange out).
func thresholds(warn, crit float64) *dashboard.ThresholdsConfigBuilder {
	steps := []dashboard.Threshold{{Value: nil, Color: "green"}}
	if warn > 0 {
		steps = append(steps, dashboard.Threshold{Value: ptr(warn), Color: "orange"})
	}
	steps = append(steps, dashboard.Threshold{Value: ptr(crit), Color: "red"})
	return dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(steps)
}

// cores is the unit of CPU panels: CPU seconds per second. Grafana has no unit for it, so such
// panels show plain numbers ("short") with the axis labelled; the descriptions say "in cores".
const cores = "cores"

// unitOf is the Grafana unit of a panel's unit (cores: short).
func unitOf(unit string) string {
	if unit == cores {
		return "short"
	}
	return unit
}

// ts is a time series panel of range queries.
func ts(title, desc, unit string, span uint32, qs ...q) *timeseries.PanelBuilder {
	b := timeseries.NewPanelBuilder().
		Title(title).
		Description(desc).
		Datasource(promDS).
		Targets(promTargets(rangeQuery, qs...)).
		Unit(unitOf(unit)).
		Min(0).
		FillOpacity(10).
		Legend(legend()).
		Tooltip(tooltip()).
		Span(span).
		Height(8)
	if unit == cores {
		b = b.AxisLabel("CPU cores")
	}
	return b
}

// stacked is ts with the series stacked (parts of a whole, e.g. workers by state).
func stacked(title, desc, unit string, span uint32, qs ...q) *timeseries.PanelBuilder {
	return ts(title, desc, unit, span, qs...).
		Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal)).
		FillOpacity(40)
}

// single is a stat panel of one instant query, red from crit.
func single(title, desc, unit string, warn, crit float64, x q) *stat.PanelBuilder {
	return stat.NewPanelBuilder().
		Title(title).
		Description(desc).
		Datasource(promDS).
		Targets(promTargets(instantQuery, x)).
		Unit(unit).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"})).
		ColorMode(common.BigValueColorModeBackground).
		GraphMode(common.BigValueGraphModeNone).
		Thresholds(thresholds(warn, crit)).
		Span(4).
		Height(4)
}

// topTable is a table of one instant query, the Time column hidden, Value renamed and sorted descending.
func topTable(title, desc, unit, valueName string, x q) *table.PanelBuilder {
	return table.NewPanelBuilder().
		Title(title).
		Description(desc).
		Datasource(promDS).
		Targets(promTargets(tableQuery, x)).
		Unit(unitOf(unit)).
		Transformations([]dashboard.DataTransformerConfig{{
			Id: "organize",
			Options: map[string]any{
				"excludeByName": map[string]any{"Time": true},
				"indexByName":   map[string]any{"instance": 0, "workerscope_worker_key": 1, "workerscope_worker_id": 2, "Value": 3},
				"renameByName":  map[string]any{"Value": valueName},
			},
		}}).
		SortBy([]cog.Builder[common.TableSortByFieldState]{
			common.NewTableSortByFieldStateBuilder().DisplayName(valueName).Desc(true),
		}).
		Footer(noFooter()).
		Span(12).
		Height(9)
}

// noFooter hides a table's footer (the SDK's default has a null reducer list).
func noFooter() *common.TableFooterOptionsBuilder {
	return common.NewTableFooterOptionsBuilder().Show(false).Reducer([]string{})
}

// timeline is a state timeline of per-worker codes, with value mappings from code to text and color.
func timeline(title, desc string, codes []string, colors []string, x q) *statetimeline.PanelBuilder {
	opts := map[string]dashboard.ValueMappingResult{}
	for i, c := range codes {
		opts[fmt.Sprint(i)] = dashboard.ValueMappingResult{Text: ptr(c), Color: ptr(colors[i]), Index: ptr(int32(i))}
	}
	return statetimeline.NewPanelBuilder().
		Title(title).
		Description(desc).
		Datasource(promDS).
		Targets(promTargets(rangeQuery, x)).
		Mappings([]dashboard.ValueMapping{{ValueMap: &dashboard.ValueMap{Type: dashboard.MappingTypeValueToText, Options: opts}}}).
		ShowValue(common.VisibilityModeNever).
		MergeValues(true).
		Legend(legend()).
		Tooltip(tooltip()).
		Span(12).
		Height(8)
}

// flameGraph is Grafana's core flame graph panel over a Pyroscope profile query.
func flameGraph(title, desc string) *dashboard.PanelBuilder {
	return dashboard.NewPanelBuilder().
		Type("flamegraph").
		Title(title).
		Description(desc).
		Datasource(pyroDS).
		WithTarget(grafanapyroscope.NewDataqueryBuilder().
			Datasource(pyroDS).
			RefId("A").
			QueryType(string(grafanapyroscope.PyroscopeQueryTypeProfile)).
			ProfileTypeId(cpuProfileType).
			LabelSelector(`{service_name=~"${job:regex}"}`).
			GroupBy([]string{})).
		Span(24).
		Height(14)
}

// queryVar is a Prometheus query variable refreshed with the time range, multi-select with "All",
// which matches allValue: ".+" (every series that has the label, as dashboard-linter wants of job
// and instance) or ".*" (also series without it: host_name, workerscope_worker_key may be absent).
func queryVar(name, label, desc, query, allValue string) *dashboard.QueryVariableBuilder {
	b := dashboard.NewQueryVariableBuilder(name).
		Label(label).
		Description(desc).
		Datasource(promDS).
		Query(dashboard.StringOrMap{String: ptr(query)}).
		Definition(query).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalCaseInsensitiveAsc).
		Multi(true).
		IncludeAll(true).
		AllValue(allValue)
	return b
}

// percentile is the percentile of a quantile for a legend: "0.5" → "50", "0.99" → "99".
func percentile(quantile string) string {
	f, err := strconv.ParseFloat(quantile, 64)
	if err != nil {
		panic(err)
	}
	return strconv.FormatFloat(f*100, 'f', -1, 64)
}

// Legends of per-worker series: one series per spawned process (workerscope_worker_id) of a session (workerscope_worker_key).
const wl = "{{workerscope_worker_key}} {{workerscope_worker_id}}"

func build() (dashboard.Dashboard, error) {
	b := dashboard.NewDashboardBuilder("workerscope").
		Uid("workerscope").
		Description("Pool, per-worker process-tree usage, RPC latency and the supervisor itself, from workerscope's OTLP metrics (docs/metrics.md) and its Pyroscope CPU profile.").
		Tags([]string{"workerscope", "opentelemetry"}).
		// Generated: changes made in Grafana would be lost at the next `make dashboards`.
		Readonly().
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Time("now-3h", "now").
		Timezone(common.TimeZoneBrowser).
		Refresh("1m").
		WithVariable(dashboard.NewDatasourceVariableBuilder(promVar).
			Label("Prometheus data source").
			Description("Prometheus-compatible data source with workerscope's metrics (Grafana Cloud: the Mimir data source, grafanacloud-<stack>-prom).").
			Type("prometheus")).
		WithVariable(dashboard.NewDatasourceVariableBuilder(pyroVar).
			Label("Pyroscope data source").
			Description("Pyroscope data source with the supervisor's profiles (Grafana Cloud: grafanacloud-<stack>-profiles).").
			Type("grafana-pyroscope-datasource")).
		WithVariable(queryVar("job", "Job",
			"service.name of the supervisors (OTEL_SERVICE_NAME, default workerscope); also the Pyroscope application name(s) of the flame graph.",
			`label_values(workerscope_worker_count, job)`, ".+")).
		WithVariable(queryVar("host", "Host",
			"host.name of the supervisors (a label of target_info only; it restricts the instance list).",
			`label_values(target_info{job=~"$job"}, host_name)`, ".*")).
		WithVariable(queryVar("instance", "Instance",
			"service.instance.id of the supervisors (random per start) on the chosen hosts.",
			`label_values(target_info{job=~"$job", host_name=~"$host"}, instance)`, ".+")).
		WithVariable(queryVar("worker_key", "Session",
			"workerscope.worker.key (session key) of the workers shown in Top workers and Per-worker detail. Absent when the supervisor runs with --metrics-worker-key=false: keep All.",
			`label_values(workerscope_worker_uptime_seconds{job=~"$job", instance=~"$instance"}, workerscope_worker_key)`, ".*"))

	// Pool overview.
	b = b.WithRow(dashboard.NewRowBuilder("Pool overview")).
		WithPanel(single("Live workers", "Workers in the pool now (every state), summed over the selected instances.", "short", 0, 1e9,
			q{`sum(workerscope_worker_count{S})`, "workers"})).
		WithPanel(single("Pool usage", "Live workers / --max-workers, over the selected instances. At 100% a new session evicts the longest-idle worker (exit reason limit), and when every worker is busy requests are refused with pool_full.", "percentunit", 0.8, 0.95,
			q{`sum(workerscope_worker_count{S}) / sum(workerscope_worker_limit{S})`, "usage"})).
		WithPanel(single("Zombie workers", "Workers alive, not running and idle past the reap TTL: the reaper cannot stop them (alert WorkerscopeWorkerZombie).", "short", 0, 1,
			q{`sum(workerscope_worker_zombie{S}) or vector(0)`, "zombies"})).
		WithPanel(single("Defunct processes", "Processes in state Z (exited, not waited for) inside worker process trees: a worker does not reap its children.", "short", 0, 1,
			q{`sum(workerscope_worker_defunct{S}) or vector(0)`, "defunct"})).
		WithPanel(single("Crash-looping sessions", "Sessions whose last 3 or more workers crashed within a minute of starting; their requests get backoff errors until the back-off ends.", "short", 0, 1,
			q{`sum(workerscope_session_crash_looping{S}) or vector(0)`, "sessions"})).
		WithPanel(single("Firing alerts", "workerscope alerts firing now (ALERTS series written by Prometheus or the Mimir ruler for rules named Workerscope*). See the Firing alerts row.", "short", 0, 1,
			q{`count(ALERTS{alertstate="firing", alertname=~"Workerscope.*", job=~"$job", instance=~"$instance"}) or vector(0)`, "alerts"})).
		WithPanel(stacked("Workers by state", "Live workers by workerscope.worker.state (starting, idle, running, stopping, exited), stacked.", "short", 8,
			q{`sum by (workerscope_worker_state) (workerscope_worker_count{S})`, "{{workerscope_worker_state}}"})).
		WithPanel(ts("Pool usage vs limit", "Live workers and --max-workers per supervisor instance.", "short", 8,
			q{`sum by (instance) (workerscope_worker_count{S})`, "{{instance}} live"},
			q{`sum by (instance) (workerscope_worker_limit{S})`, "{{instance}} limit"})).
		WithPanel(ts("Spawns and exits", "Workers spawned, spawns that failed, and workers that ended by workerscope.exit.reason (idle_reaped, stopped, crashed, killed = SIGKILLed after the grace, limit = evicted under --max-workers), per second.", "ops", 8,
			q{`sum(rate(workerscope_worker_spawns_total{S}[$__rate_interval]))`, "spawned"},
			q{`sum(rate(workerscope_worker_spawn_failures_total{S}[$__rate_interval])) or vector(0)`, "spawn failed"},
			q{`sum by (workerscope_exit_reason) (rate(workerscope_worker_exits_total{S}[$__rate_interval]))`, "exit {{workerscope_exit_reason}}"})).
		WithPanel(ts("Crash rate", "Workers that crashed (exit reason crashed), per minute, by supervisor instance.", "cpm", 8,
			q{`60 * sum by (instance) (rate(workerscope_worker_exits_total{S, workerscope_exit_reason="crashed"}[$__rate_interval])) or on() vector(0)`, "{{instance}}"})).
		WithPanel(ts("Refused requests", "Requests refused without reaching a worker, per second: pool_full (every worker busy at --max-workers) and backoff (the session is crash-looping).", "reqps", 8,
			q{`sum(rate(workerscope_rpc_duration_seconds_count{S, error_type="pool_full"}[$__rate_interval])) or vector(0)`, "pool_full"},
			q{`sum(rate(workerscope_rpc_duration_seconds_count{S, error_type="backoff"}[$__rate_interval])) or vector(0)`, "backoff"})).
		WithPanel(ts("Zombies, defunct processes, crash-looping sessions", "Counts of the stuck things over time: zombie workers, defunct processes in worker trees, crash-looping sessions. All should be 0.", "short", 8,
			q{`sum(workerscope_worker_zombie{S}) or vector(0)`, "zombie workers"},
			q{`sum(workerscope_worker_defunct{S}) or vector(0)`, "defunct processes"},
			q{`sum(workerscope_session_crash_looping{S}) or vector(0)`, "crash-looping sessions"}))

	// Firing alerts.
	// Every workerscope alert carries job and instance but the label-less WorkerscopeAbsent
	// (absent(): no supervisor of any job reports), which then shows in Alertmanager only: the
	// dashboard has no job to show then.
	alertsExpr := `ALERTS{alertstate="firing", alertname=~"Workerscope.*", job=~"$job", instance=~"$instance"}`
	b = b.WithRow(dashboard.NewRowBuilder("Firing alerts")).
		WithPanel(table.NewPanelBuilder().
			Title("Firing workerscope alerts").
			Description("ALERTS series of the workerscope alert rules (deploy/prometheus/workerscope.rules.yaml, docs/alerts.md) that are firing now, with their labels. Written by Prometheus or, on Grafana Cloud, the Mimir ruler. Of the chosen jobs and instances: the alert that no supervisor reports at all (WorkerscopeAbsent without labels) is in Alertmanager only.").
			Datasource(promDS).
			Targets(promTargets(tableQuery, q{alertsExpr, "{{alertname}}"})).
			Transformations([]dashboard.DataTransformerConfig{{
				Id: "organize",
				Options: map[string]any{
					"excludeByName": map[string]any{"Time": true, "Value": true, "__name__": true, "alertstate": true},
					"indexByName":   map[string]any{"alertname": 0, "severity": 1},
				},
			}}).
			Unit("none").
			Footer(noFooter()).
			Span(16).
			Height(8)).
		WithPanel(ts("Firing alerts over time", "Firing workerscope alerts by alertname.", "short", 8,
			q{`count by (alertname) (` + alertsExpr + `)`, "{{alertname}}"}))

	// Top workers.
	cpuByWorker := `sum by (instance, workerscope_worker_key, workerscope_worker_id) (rate(workerscope_worker_cpu_time_seconds_total{W}[$__rate_interval]))`
	rssByWorker := `sum by (instance, workerscope_worker_key, workerscope_worker_id) (workerscope_worker_memory_usage_bytes{W})`
	b = b.WithRow(dashboard.NewRowBuilder("Top workers")).
		WithPanel(topTable("Top 10 workers by CPU", "Workers using the most CPU now, in cores (CPU seconds per second of the worker's whole process tree, user + system).", cores, "CPU (cores)",
			q{`topk(10, ` + cpuByWorker + `)`, wl})).
		WithPanel(topTable("Top 10 workers by memory", "Workers with the largest resident set now (RSS summed over the worker's process tree).", "bytes", "RSS",
			q{`topk(10, ` + rssByWorker + `)`, wl})).
		WithPanel(ts("CPU of the top 10 workers", "CPU of the 10 busiest workers at each point, in cores (process tree, user + system).", cores, 12,
			q{`topk(10, ` + cpuByWorker + `)`, wl})).
		WithPanel(ts("Memory of the top 10 workers", "RSS of the 10 largest workers at each point (process tree).", "bytes", 12,
			q{`topk(10, ` + rssByWorker + `)`, wl}))

	// Per-worker detail.
	b = b.WithRow(dashboard.NewRowBuilder("Per-worker detail ($worker_key)")).
		WithPanel(ts("CPU by mode", "CPU of each worker's process tree by cpu.mode (user, system), in cores; includes descendants that exited.", cores, 8,
			q{`sum by (workerscope_worker_key, workerscope_worker_id, cpu_mode) (rate(workerscope_worker_cpu_time_seconds_total{W}[$__rate_interval]))`, wl + " {{cpu_mode}}"})).
		WithPanel(ts("Memory (RSS)", "Resident set size summed over each worker's process tree (shared pages count once per process, as in top).", "bytes", 8,
			q{`sum by (workerscope_worker_key, workerscope_worker_id) (workerscope_worker_memory_usage_bytes{W})`, wl})).
		WithPanel(ts("Virtual memory", "Virtual memory size summed over each worker's process tree.", "bytes", 8,
			q{`sum by (workerscope_worker_key, workerscope_worker_id) (workerscope_worker_memory_virtual_bytes{W})`, wl})).
		WithPanel(ts("Threads", "Threads in each worker's process tree.", "short", 8,
			q{`sum by (workerscope_worker_key, workerscope_worker_id) (workerscope_worker_thread_count{W})`, wl})).
		WithPanel(ts("Open file descriptors", "Open file descriptors in each worker's process tree.", "short", 8,
			q{`sum by (workerscope_worker_key, workerscope_worker_id) (workerscope_worker_file_descriptor_count{W})`, wl})).
		WithPanel(ts("Processes", "Processes in each worker's tree, re-parented descendants included.", "short", 8,
			q{`sum by (workerscope_worker_key, workerscope_worker_id) (workerscope_worker_process_count{W})`, wl})).
		WithPanel(ts("Defunct processes", "Processes in state Z (exited but not waited for) in each worker's tree; above 0 for minutes means the worker does not reap its children.", "short", 8,
			q{`sum by (workerscope_worker_key, workerscope_worker_id) (workerscope_worker_defunct{W})`, wl})).
		WithPanel(ts("Page faults", "Major (disk reads) and minor page faults per second in each worker's process tree.", "cps", 8,
			q{`sum by (workerscope_worker_key, workerscope_worker_id, system_paging_fault_type) (rate(workerscope_worker_paging_faults_total{W}[$__rate_interval]))`, wl + " {{system_paging_fault_type}}"})).
		WithPanel(ts("Requests", "Commands sent to each worker, per second.", "reqps", 8,
			q{`sum by (workerscope_worker_key, workerscope_worker_id) (rate(workerscope_worker_requests_total{W}[$__rate_interval]))`, wl})).
		WithPanel(ts("Idle time", "Time since each worker's last user-initiated command was sent or answered; the reaper stops idle workers past the idle TTL.", "s", 12,
			q{`max by (workerscope_worker_key, workerscope_worker_id) (workerscope_worker_idle_time_seconds{W})`, wl})).
		WithPanel(ts("Uptime", "Time since each worker was spawned.", "s", 12,
			q{`max by (workerscope_worker_key, workerscope_worker_id) (workerscope_worker_uptime_seconds{W})`, wl})).
		WithPanel(timeline("State", "Each worker's state over time (starting, idle, running, stopping).",
			[]string{"", "starting", "idle", "running", "stopping"}, []string{"transparent", "blue", "green", "yellow", "orange"},
			q{`max by (workerscope_worker_key, workerscope_worker_id) (` +
				`(workerscope_worker_state{W, workerscope_worker_state="starting"} * 1) or ` +
				`(workerscope_worker_state{W, workerscope_worker_state="idle"} * 2) or ` +
				`(workerscope_worker_state{W, workerscope_worker_state="running"} * 3) or ` +
				`(workerscope_worker_state{W, workerscope_worker_state="stopping"} * 4))`, wl})).
		WithPanel(timeline("Zombie", "1 (zombie) when a worker is alive, not running and idle past the reap TTL: the reaper failed or a stop is stuck.",
			[]string{"ok", "zombie"}, []string{"green", "red"},
			q{`max by (workerscope_worker_key, workerscope_worker_id) (workerscope_worker_zombie{W})`, wl}))

	// RPC.
	quantile := func(p string) q {
		return q{`histogram_quantile(` + p + `, sum by (le, rpc_method) (rate(workerscope_rpc_duration_seconds_bucket{S}[$__rate_interval])))`,
			"p" + percentile(p) + " {{rpc_method}}"}
	}
	b = b.WithRow(dashboard.NewRowBuilder("RPC")).
		WithPanel(ts("RPC latency p50 / p95 / p99 by method", "Time from a command's arrival to its response, by rpc.method (the command type), from the workerscope.rpc.duration histogram; failed requests included.", "s", 12,
			quantile("0.5"), quantile("0.95"), quantile("0.99"))).
		WithPanel(ts("RPC rate by method", "Commands answered per second by rpc.method, errors included.", "reqps", 12,
			q{`sum by (rpc_method) (rate(workerscope_rpc_duration_seconds_count{S}[$__rate_interval]))`, "{{rpc_method}}"})).
		WithPanel(ts("RPC errors by type", "Failed commands per second by error.type (worker_error, timeout, canceled, worker_exit, pool_full, backoff, spawn_failed, ...); 'none' when there were none.", "reqps", 12,
			q{`sum by (error_type) (rate(workerscope_rpc_duration_seconds_count{S, error_type!=""}[$__rate_interval])) or on() label_replace(vector(0), "error_type", "none", "", "")`, "{{error_type}}"})).
		WithPanel(ts("RPC error ratio", "Share of commands that failed (any error.type).", "percentunit", 12,
			q{`(sum(rate(workerscope_rpc_duration_seconds_count{S, error_type!=""}[$__rate_interval])) or vector(0)) / sum(rate(workerscope_rpc_duration_seconds_count{S}[$__rate_interval]))`, "errors"})).
		WithPanel(ts("Costliest commands", "The 10 command types whose workers' process trees used the most CPU, in cores (CPU seconds per second, user + system, exited children included), by rpc.method: for commands that start a streamed run (pi's prompt) the whole run (workerscope.run.cpu_time), else the command to its response (workerscope.rpc.cpu_time). Overlapping commands on one worker each count the whole tree's (workerscope.cost.shared on their spans); Linux only. Find the single costliest spans in the tracing backend by workerscope.cost.cpu_time.", cores, 12,
			q{`topk(10, sum by (rpc_method) (rate(workerscope_run_cpu_time_seconds_sum{S}[$__rate_interval])) or sum by (rpc_method) (rate(workerscope_rpc_cpu_time_seconds_sum{S}[$__rate_interval]))) or on() label_replace(vector(0), "rpc_method", "none", "", "")`, "{{rpc_method}}"})).
		WithPanel(ts("Run duration p50 / p95 by method", "Time from the arrival of a command that started a streamed run (pi's prompt) to the run's end (agent_end, the worker's exit, or --max-run-duration), from workerscope.run.duration; 'none' before any run ended.", "s", 12,
			q{`histogram_quantile(0.5, sum by (le, rpc_method) (rate(workerscope_run_duration_seconds_bucket{S}[$__rate_interval]))) or on() label_replace(vector(0), "rpc_method", "none", "", "")`, "p50 {{rpc_method}}"},
			q{`histogram_quantile(0.95, sum by (le, rpc_method) (rate(workerscope_run_duration_seconds_bucket{S}[$__rate_interval]))) or on() label_replace(vector(0), "rpc_method", "none", "", "")`, "p95 {{rpc_method}}"}))

	// Agent runs: pi's model and tool calls (docs/traces-and-logs.md#agent-runs-genai-spans).
	b = b.WithRow(dashboard.NewRowBuilder("Agent runs (GenAI)")).
		WithPanel(ts("Tokens by model", "Tokens per second the agents' model calls used, by provider, model and gen_ai.token.type (input includes cached input), from gen_ai.client.token.usage.", "cps", 12,
			q{`sum by (gen_ai_provider_name, gen_ai_request_model, gen_ai_token_type) (rate(gen_ai_client_token_usage_sum{S}[$__rate_interval]))`, "{{gen_ai_provider_name}}/{{gen_ai_request_model}} {{gen_ai_token_type}}"})).
		WithPanel(ts("Spend by model", "US dollars per hour the agents' model calls cost, by provider and model (the agents' own reckoning: pi's usage.cost.total), from workerscope.gen_ai.cost. Alert: WorkerscopeGenAISpendHigh.", "currencyUSD", 12,
			q{`3600 * sum by (gen_ai_provider_name, gen_ai_request_model) (rate(workerscope_gen_ai_cost_total{S}[$__rate_interval]))`, "{{gen_ai_provider_name}}/{{gen_ai_request_model}}"})).
		WithPanel(topTable("Top 10 sessions by spend", "Sessions (of live workers) that spent the most on model calls since they began or were reset (DELETE /api/sessions/{key}), in US dollars, from workerscope.session.gen_ai.cost. workerscope_worker_key is absent with --metrics-worker-key=false.", "currencyUSD", "Spend",
			q{`topk(10, sum by (instance, workerscope_worker_key, workerscope_worker_id) (workerscope_session_gen_ai_cost{W}))`, wl})).
		WithPanel(ts("Tool CPU by tool", "CPU of the worker trees during each tool's calls, in cores (CPU seconds per second, recorded as each call ends), by gen_ai.tool.name, from workerscope.gen_ai.tool.cpu_time. Alert: WorkerscopeToolCPUHog. The single costliest calls are the execute_tool spans with the largest workerscope.cost.cpu_time.", cores, 12,
			q{`sum by (gen_ai_tool_name) (rate(workerscope_gen_ai_tool_cpu_time_seconds_sum{S}[$__rate_interval]))`, "{{gen_ai_tool_name}}"})).
		WithPanel(ts("Model call latency p50 / p95 by model", "Time of one model call, message_start to message_end as the supervisor saw them, from gen_ai.client.operation.duration.", "s", 12,
			q{`histogram_quantile(0.5, sum by (le, gen_ai_request_model) (rate(gen_ai_client_operation_duration_seconds_bucket{S}[$__rate_interval])))`, "p50 {{gen_ai_request_model}}"},
			q{`histogram_quantile(0.95, sum by (le, gen_ai_request_model) (rate(gen_ai_client_operation_duration_seconds_bucket{S}[$__rate_interval])))`, "p95 {{gen_ai_request_model}}"})).
		WithPanel(ts("Sessions' budget use", "Share of its budget each session has used (workerscope_budget: tokens or spend; reported when --session-token-budget / --session-spend-budget-usd is set). At 100% the run is aborted and prompts are refused until the session is reset. Alert: WorkerscopeSessionNearBudget.", "percentunit", 12,
			q{`max by (workerscope_worker_key, workerscope_worker_id, workerscope_budget) (workerscope_session_budget_utilization_ratio{W})`, wl + " {{workerscope_budget}}"}))

	// The supervisor itself.
	b = b.WithRow(dashboard.NewRowBuilder("The supervisor itself")).
		WithPanel(ts("Sampler pass duration", "Wall time of one sampling pass over every worker's process tree (p50 and p99), per instance. It grows with the number of processes.", "s", 8,
			q{`histogram_quantile(0.5, sum by (le, instance) (rate(workerscope_sampler_duration_seconds_bucket{S}[$__rate_interval])))`, "{{instance}} p50"},
			q{`histogram_quantile(0.99, sum by (le, instance) (rate(workerscope_sampler_duration_seconds_bucket{S}[$__rate_interval])))`, "{{instance}} p99"})).
		WithPanel(ts("Errors", "Per second: worker measurements that failed (sampler), failed OTLP metric exports (counted in the next successful export), failed Pyroscope uploads.", "cps", 8,
			q{`sum(rate(workerscope_sampler_errors_total{S}[$__rate_interval])) or vector(0)`, "sampler errors"},
			q{`sum(rate(workerscope_export_errors_total{S}[$__rate_interval])) or vector(0)`, "OTLP export errors"},
			q{`sum(rate(workerscope_profiling_upload_errors_total{S}[$__rate_interval])) or vector(0)`, "Pyroscope upload errors"})).
		WithPanel(ts("Skipped lines, dropped events, reaped orphans", "Per second: worker output lines skipped by reason (invalid, oversize), events lost by subscribers that fell behind, re-parented worker descendants reaped by the supervisor.", "cps", 8,
			q{`sum by (workerscope_line_reason) (rate(workerscope_worker_lines_skipped_total{S}[$__rate_interval])) or on() label_replace(vector(0), "reason", "none", "", "")`, "lines skipped {{workerscope_line_reason}}"},
			q{`sum(rate(workerscope_events_dropped_total{S}[$__rate_interval])) or vector(0)`, "events dropped"},
			q{`sum(rate(workerscope_orphans_reaped_total{S}[$__rate_interval])) or vector(0)`, "orphans reaped"})).
		WithPanel(ts("Supervisor CPU", "CPU of the supervisor process itself by cpu.mode, in cores (workers not included).", cores, 8,
			q{`sum by (instance, cpu_mode) (rate(process_cpu_time_seconds_total{S}[$__rate_interval]))`, "{{instance}} {{cpu_mode}}"})).
		WithPanel(ts("Supervisor memory", "Resident set size of the supervisor process, and the Go runtime's view: memory used by type and the heap size of the next GC (GC goal).", "bytes", 8,
			q{`sum by (instance) (process_memory_usage_bytes{S})`, "{{instance}} RSS"},
			q{`sum by (instance, go_memory_type) (go_memory_used_bytes{S})`, "{{instance}} Go {{go_memory_type}}"},
			q{`sum by (instance) (go_memory_gc_goal_bytes{S})`, "{{instance}} GC goal"})).
		WithPanel(ts("Supervisor file descriptors and threads", "Open file descriptors (three pipes per worker plus sockets) and OS threads of the supervisor.", "short", 8,
			q{`sum by (instance) (process_unix_file_descriptor_count{S})`, "{{instance}} fds"},
			q{`sum by (instance) (process_thread_count{S})`, "{{instance}} threads"})).
		WithPanel(ts("Goroutines", "Live goroutines of the supervisor (a few per worker); steady growth with a steady pool is a leak.", "short", 8,
			q{`sum by (instance) (go_goroutine_count{S})`, "{{instance}}"})).
		WithPanel(ts("Go scheduling latency p99", "99th percentile of the time goroutines wait runnable before they run: high values mean the supervisor is CPU-starved.", "s", 8,
			q{`histogram_quantile(0.99, sum by (le, instance) (rate(go_schedule_duration_seconds_bucket{S}[$__rate_interval])))`, "{{instance}}"})).
		WithPanel(ts("Go allocation rate", "Heap bytes allocated per second by the supervisor.", "Bps", 8,
			q{`sum by (instance) (rate(go_memory_allocated_bytes_total{S}[$__rate_interval]))`, "{{instance}}"}))

	// Profile.
	b = b.WithRow(dashboard.NewRowBuilder("Supervisor CPU profile")).
		WithPanel(flameGraph("Supervisor CPU flame graph", "CPU profile of the supervisor over the dashboard's time range, from Pyroscope (application name = service.name = $job). Empty unless workerscope runs with Pyroscope profiling enabled (docs/profiling.md)."))

	d, err := b.Build()
	if err != nil {
		return d, err
	}
	numberPanels(&d)
	return d, nil
}

// numberPanels gives every row and panel a stable id in document order.
func numberPanels(d *dashboard.Dashboard) {
	id := uint32(0)
	for i := range d.Panels {
		id++
		switch p := d.Panels[i]; {
		case p.RowPanel != nil:
			p.RowPanel.Id = id
			for j := range p.RowPanel.Panels {
				id++
				p.RowPanel.Panels[j].Id = ptr(id)
			}
		case p.Panel != nil:
			p.Panel.Id = ptr(id)
		}
	}
}
