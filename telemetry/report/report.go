package report

import (
	"context"
	"encoding/json"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/workerscope/workerscope/telemetry/sampler"
	"github.com/workerscope/workerscope/workers"
)

// JSONOptions configures the JSON report of GET /api/metrics.
type JSONOptions struct {
	// Sampler is the shared sampler (the same one the OTel callbacks read:
	// there is no second sampling path). Required.
	Sampler *sampler.Sampler
	// Gauges are the application's extra process gauges, shown in
	// "process" (an *otelmetrics.Gauges).
	Gauges interface{ Values() map[string]int64 }
	// SSEClients reports open event streams.
	SSEClients func() int64
	// Version is reported as process.version.
	Version string
	// Started is when the process started (uptime). Default: now.
	Started time.Time
	// Limits reports the per-worker limits and what enforces them
	// (Manager.Limits); nil shows none.
	Limits func() workers.LimitsInfo
	// Isolation reports the worker isolation tiers (Manager.Isolation);
	// nil shows none.
	Isolation func() workers.IsolationInfo
	// Wait bounds how long a request waits for a sampling pass in
	// progress before answering from the previous report. Default 2s.
	Wait time.Duration
	// StderrTail returns the tail of a live worker's stderr
	// (Manager.StderrTail), shown as stderr_tail in the one-worker view
	// (?worker=ID); nil shows none.
	StderrTail func(id string) (string, bool)
}

// JSON serves GET /api/metrics: process health and one entry per worker
// from the shared sample. Fields that could not be measured are null with
// an "error"; the response itself does not fail.
//
// Query parameters: fields=a,b,… keeps only those worker fields (id is
// always kept; an unknown name is 400 bad_fields); worker=ID lists that
// one worker alone, with its stderr_tail (404 not_found when the sample
// has no such worker). The body is gzip-compressed when the client
// accepts it (Accept-Encoding), and Vary: Accept-Encoding says so.
func JSON(opts JSONOptions) http.Handler {
	if opts.Started.IsZero() {
		opts.Started = time.Now()
	}
	if opts.Wait <= 0 {
		opts.Wait = 2 * time.Second
	}
	h := &reportHandler{opts: opts}
	return h
}

type reportHandler struct {
	opts JSONOptions

	mu       sync.Mutex
	procAt   time.Time
	proc     processJSON
	cacheFor *sampler.Report
	cacheAt  time.Time
	// bodies are the encoded reports of cacheFor by field selection
	// (fieldSet.key), each with its gzip form once a client asked for it.
	bodies map[string]*encoded
}

// encoded is one encoded report: plain, and gzip-compressed (lazily).
type encoded struct {
	plain, gz []byte
}

// maxCachedBodies bounds the cached field selections of one report.
const maxCachedBodies = 8

type processJSON struct {
	Goroutines         int              `json:"goroutines"`
	HeapAllocBytes     uint64           `json:"heap_alloc_bytes"`
	HeapInuseBytes     uint64           `json:"heap_inuse_bytes"`
	HeapSysBytes       uint64           `json:"heap_sys_bytes"`
	GCCount            uint32           `json:"gc_count"`
	GCPauseLastSeconds float64          `json:"gc_pause_last_seconds"`
	OpenFDs            *int             `json:"open_fds"`
	SSEClients         int64            `json:"sse_clients"`
	UptimeSeconds      float64          `json:"uptime_seconds"`
	Version            string           `json:"version"`
	GoVersion          string           `json:"go_version"`
	Gauges             map[string]int64 `json:"-"`
}

// MarshalJSON flattens the application gauges into the object.
func (p processJSON) MarshalJSON() ([]byte, error) {
	type plain processJSON
	b, err := json.Marshal(plain(p))
	if err != nil || len(p.Gauges) == 0 {
		return b, err
	}
	extra, err := json.Marshal(p.Gauges)
	if err != nil {
		return nil, err
	}
	// {"a":1} + {"g":2} → {"a":1,"g":2}
	return append(append(b[:len(b)-1], ','), extra[1:]...), nil
}

type usageJSON struct {
	ID         string   `json:"id"`
	Key        string   `json:"key"`
	PID        int      `json:"pid"`
	State      string   `json:"state"`
	CPUPercent *float64 `json:"cpu_percent"`
	CPUSeconds *float64 `json:"cpu_seconds"`
	RSSBytes   *int64   `json:"rss_bytes"`
	VMSBytes   *int64   `json:"vms_bytes"`
	Threads    *int     `json:"threads"`
	FDs        *int     `json:"fds"`
	Processes  *int     `json:"processes"`
	Defunct    *int     `json:"defunct"`
	// CgroupFigures names the figures read from the worker's cgroup
	// files instead of /proc: "cpu" (cpu_seconds, cpu_percent), "memory"
	// (rss_bytes is then the group's working set), "threads"
	// (pids.current). Absent when every figure came from /proc.
	CgroupFigures []string `json:"cgroup_figures,omitempty"`
	UptimeSeconds float64  `json:"uptime_seconds"`
	IdleSeconds   float64  `json:"idle_seconds"`
	Zombie        bool     `json:"zombie"`
	Requests      uint64   `json:"requests"`
	Restarts      int      `json:"restarts"`
	// The worker's limits (0 = none) and how often its tree hit them.
	MemoryMax int64             `json:"memory_max"`
	PidsMax   int64             `json:"pids_max"`
	CPUMax    float64           `json:"cpu_max"`
	LimitHits map[string]uint64 `json:"limit_hits,omitempty"`
	Error     *string           `json:"error"`
	// LastCommands are the worker's last few commands with their cost.
	LastCommands []lastCommandJSON `json:"last_commands"`
	// Agent is the session's model usage and spend and the worker's last
	// tool calls (absent when the session ran no agent steps).
	Agent *agentJSON `json:"agent,omitempty"`
	// StderrTail is the end of the worker's stderr, in the one-worker
	// view (?worker=ID) only.
	StderrTail *string `json:"stderr_tail,omitempty"`
}

type totalsJSON struct {
	Workers    int     `json:"workers"`
	Zombies    int     `json:"zombies"`
	CPUPercent float64 `json:"cpu_percent"`
	RSSBytes   int64   `json:"rss_bytes"`
	VMSBytes   int64   `json:"vms_bytes"`
	Threads    int     `json:"threads"`
	FDs        int     `json:"fds"`
	Processes  int     `json:"processes"`
	Defunct    int     `json:"defunct"`
	// Tokens and CostUSD sum the sessions' model usage (of the live
	// workers' sessions).
	Tokens  int64   `json:"tokens"`
	CostUSD float64 `json:"cost_usd"`
}

type reportJSON struct {
	SampledAt     *time.Time             `json:"sampled_at"`
	WindowSeconds float64                `json:"window_seconds"`
	SampleSeconds float64                `json:"sample_duration_seconds"`
	NumCPU        int                    `json:"num_cpu"`
	Process       processJSON            `json:"process"`
	Workers       json.Marshaler         `json:"workers"`
	Totals        totalsJSON             `json:"totals"`
	SamplerErrors uint64                 `json:"sampler_errors"`
	Limits        *workers.LimitsInfo    `json:"limits"`
	Isolation     *workers.IsolationInfo `json:"isolation,omitempty"`
	Error         *string                `json:"error"`
}

func (h *reportHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	hd.Add("Vary", "Accept-Encoding")
	q := r.URL.Query()
	fields, err := parseFields(q["fields"])
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_fields", err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.Wait)
	defer cancel()
	rep := h.opts.Sampler.Report(ctx)
	gz := acceptsGzip(r.Header.Values("Accept-Encoding"))
	var body []byte
	if q.Has("worker") {
		plain, ok := h.renderOne(rep, q.Get("worker"), fields)
		if !ok {
			writeError(w, http.StatusNotFound, "not_found", "no worker with that id in the sample")
			return
		}
		body = plain
		if gz {
			body = gzipped(plain)
		}
	} else {
		body = h.render(rep, fields, gz)
	}
	hd.Set("Content-Type", "application/json")
	if gz {
		hd.Set("Content-Encoding", "gzip")
	}
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

// writeError writes the API's JSON error body.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}{msg, code})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// render encodes rep with fresh process health, keeping only fields of
// each worker; the body is reused for every request within a second of
// the same report and the same fields, so twenty pollers cost one
// encoding (and one compression).
func (h *reportHandler) render(rep *sampler.Report, fields fieldSet, gz bool) []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	if rep != h.cacheFor || now.Sub(h.cacheAt) >= time.Second || len(h.bodies) >= maxCachedBodies {
		clear(h.bodies)
		h.cacheFor, h.cacheAt = rep, now
	}
	e := h.bodies[fields.key]
	if e == nil {
		out := h.report(now, rep, "")
		out.Workers = selected{ws: out.Workers.(selected).ws, fields: fields}
		e = &encoded{plain: encode(out)}
		if h.bodies == nil {
			h.bodies = map[string]*encoded{}
		}
		h.bodies[fields.key] = e
	}
	if !gz {
		return e.plain
	}
	if e.gz == nil {
		e.gz = gzipped(e.plain)
	}
	return e.gz
}

// renderOne encodes rep with only the worker id, and its stderr tail;
// false when the sample has no such worker.
func (h *reportHandler) renderOne(rep *sampler.Report, id string, fields fieldSet) ([]byte, bool) {
	h.mu.Lock()
	out := h.report(time.Now(), rep, id)
	h.mu.Unlock()
	ws := out.Workers.(selected).ws
	if len(ws) != 1 {
		return nil, false
	}
	if h.opts.StderrTail != nil {
		if tail, ok := h.opts.StderrTail(id); ok {
			ws[0].StderrTail = &tail
		}
	}
	out.Workers = selected{ws: ws, fields: fields}
	return encode(out), true
}

func encode(out reportJSON) []byte {
	b, err := json.Marshal(out)
	if err != nil {
		b = []byte(`{"error":"cannot encode report"}`)
	}
	return append(b, '\n')
}

// report builds the document of rep (h.mu held): every worker, or only
// the one with ID only when only != ""; the totals cover every worker.
func (h *reportHandler) report(now time.Time, rep *sampler.Report, only string) reportJSON {
	if now.Sub(h.procAt) >= time.Second {
		h.proc = h.processHealth(now, rep)
		h.procAt = now
	}
	out := reportJSON{Process: h.proc, NumCPU: runtime.NumCPU()}
	ws := []usageJSON{}
	if h.opts.Limits != nil {
		li := h.opts.Limits()
		out.Limits = &li
	}
	if h.opts.Isolation != nil {
		iso := h.opts.Isolation()
		out.Isolation = &iso
	}
	if rep != nil {
		at := rep.SampledAt.UTC()
		out.SampledAt = &at
		out.WindowSeconds = rep.Window.Seconds()
		out.SampleSeconds = rep.Duration.Seconds()
		out.SamplerErrors = rep.Errors
		if rep.Err != nil {
			msg := rep.Err.Error()
			out.Error = &msg
		}
		if only == "" {
			ws = make([]usageJSON, 0, len(rep.Workers))
		}
		for i := range rep.Workers {
			e := workerEntry(&rep.Workers[i], &out.Totals)
			if only == "" || e.ID == only {
				ws = append(ws, e)
			}
		}
	} else {
		msg := "no sample yet"
		out.Error = &msg
	}
	out.Workers = selected{ws: ws}
	return out
}

func workerEntry(wr *sampler.WorkerReport, t *totalsJSON) usageJSON {
	t.Workers++
	e := usageJSON{
		ID: wr.ID, Key: wr.Key, PID: wr.PID, State: string(wr.State),
		UptimeSeconds: wr.Uptime.Seconds(), IdleSeconds: wr.Idle.Seconds(),
		Zombie: wr.Zombie, Requests: wr.Requests, Restarts: wr.Restarts,
		MemoryMax: wr.MemoryMax, PidsMax: wr.PidsMax, CPUMax: wr.CPUMax, LimitHits: wr.LimitHits,
		LastCommands: lastCommands(wr.LastCommands),
		Agent:        agentEntry(wr.Agent),
	}
	if wr.Agent != nil {
		t.Tokens += wr.Agent.Usage.Total
		t.CostUSD += wr.Agent.Usage.CostUSD
	}
	if wr.Zombie {
		t.Zombies++
	}
	if wr.Err != nil {
		msg := wr.Err.Error()
		e.Error = &msg
		return e
	}
	if wr.Partial != nil {
		msg := wr.Partial.Error()
		e.Error = &msg
	}
	if wr.HasRate {
		p := wr.CPUPercent
		e.CPUPercent = &p
		t.CPUPercent += p
	}
	cpu := wr.CPUUser + wr.CPUSystem
	rss, vms, threads, fds, procs, defunct := wr.RSSBytes, wr.VMSBytes, wr.Threads, wr.FDs, wr.Processes, wr.Defunct
	if fc := wr.FromCgroup; fc.Any() {
		for _, f := range [...]struct {
			on   bool
			name string
		}{{fc.CPU, "cpu"}, {fc.Memory, "memory"}, {fc.Tasks, "threads"}} {
			if f.on {
				e.CgroupFigures = append(e.CgroupFigures, f.name)
			}
		}
	}
	e.CPUSeconds, e.RSSBytes, e.VMSBytes = &cpu, &rss, &vms
	e.Threads, e.FDs, e.Processes, e.Defunct = &threads, &fds, &procs, &defunct
	t.RSSBytes += rss
	t.VMSBytes += vms
	t.Threads += threads
	t.FDs += fds
	t.Processes += procs
	t.Defunct += defunct
	return e
}

// processHealth reads the Go runtime now; the open fds come from the
// sampler's measurement of this process in rep.
func (h *reportHandler) processHealth(now time.Time, rep *sampler.Report) processJSON {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	p := processJSON{
		Goroutines:         runtime.NumGoroutine(),
		HeapAllocBytes:     ms.HeapAlloc,
		HeapInuseBytes:     ms.HeapInuse,
		HeapSysBytes:       ms.HeapSys,
		GCCount:            ms.NumGC,
		GCPauseLastSeconds: time.Duration(ms.PauseNs[(ms.NumGC+255)%256]).Seconds(),
		UptimeSeconds:      now.Sub(h.opts.Started).Seconds(),
		Version:            h.opts.Version,
		GoVersion:          runtime.Version(),
		Gauges:             gaugeValues(h.opts.Gauges),
	}
	if rep != nil && rep.Self.Err == nil && rep.Self.Partial == nil {
		n := rep.Self.FDs
		p.OpenFDs = &n
	}
	if h.opts.SSEClients != nil {
		p.SSEClients = h.opts.SSEClients()
	}
	return p
}

func gaugeValues(g interface{ Values() map[string]int64 }) map[string]int64 {
	if g == nil {
		return nil
	}
	return g.Values()
}
