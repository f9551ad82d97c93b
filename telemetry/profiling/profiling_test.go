package profiling

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/pprof/profile"
	"github.com/workerscope/workerscope/internal/proflabel"
	"github.com/workerscope/workerscope/telemetry/report"
)

// profEnv is a Getenv over key/value pairs.
func profEnv(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// profLogs is a slog handler that keeps every record.
type profLogs struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *profLogs) Enabled(context.Context, slog.Level) bool { return true }
func (h *profLogs) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.recs = append(h.recs, r.Clone())
	h.mu.Unlock()
	return nil
}
func (h *profLogs) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *profLogs) WithGroup(string) slog.Handler      { return h }

// count returns how many records at level have msg starting with prefix.
func (h *profLogs) count(level slog.Level, prefix string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.recs {
		if r.Level == level && strings.HasPrefix(r.Message, prefix) {
			n++
		}
	}
	return n
}

func (h *profLogs) dump() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	for _, r := range h.recs {
		b.WriteString(r.Level.String() + " " + r.Message)
		r.Attrs(func(a slog.Attr) bool { b.WriteString(" " + a.String()); return true })
		b.WriteString("\n")
	}
	return b.String()
}

// ingestUpload is one request to the fake ingest API, parsed.
type ingestUpload struct {
	kind   string // cpu, heap, goroutine, mutex, block
	name   string // the name query parameter
	query  map[string]string
	header http.Header
	prof   *profile.Profile
}

// fakeIngest is a Pyroscope ingest API on 127.0.0.1 that answers 200 and
// parses every upload's multipart profile part as pprof.
type fakeIngest struct {
	*httptest.Server
	mu      sync.Mutex
	uploads []ingestUpload
	errs    []error
}

func newFakeIngest(t *testing.T) *fakeIngest {
	f := &fakeIngest{}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeIngest) serve(w http.ResponseWriter, r *http.Request) {
	u, err := parseIngest(r)
	f.mu.Lock()
	if err != nil {
		f.errs = append(f.errs, err)
	} else {
		f.uploads = append(f.uploads, u)
	}
	f.mu.Unlock()
	w.WriteHeader(http.StatusOK) // the client treats anything else as failure
}

func parseIngest(r *http.Request) (ingestUpload, error) {
	u := ingestUpload{header: r.Header.Clone(), query: map[string]string{}}
	if r.Method != http.MethodPost || r.URL.Path != "/ingest" {
		return u, errors.New("unexpected " + r.Method + " " + r.URL.Path)
	}
	for k := range r.URL.Query() {
		u.query[k] = r.URL.Query().Get(k)
	}
	u.name = u.query["name"]
	if err := r.ParseMultipartForm(32 << 20); err != nil {
		return u, err
	}
	part := func(name string) ([]byte, error) {
		fhs := r.MultipartForm.File[name]
		if len(fhs) != 1 {
			return nil, nil
		}
		f, err := fhs[0].Open()
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return io.ReadAll(f)
	}
	raw, err := part("profile")
	if err != nil || raw == nil {
		return u, errors.New("no profile part")
	}
	if u.prof, err = profile.ParseData(raw); err != nil {
		return u, err
	}
	stc, err := part("sample_type_config")
	if err != nil {
		return u, err
	}
	var cfg map[string]struct {
		DisplayName string `json:"display-name"`
	}
	if stc != nil {
		if err := json.Unmarshal(stc, &cfg); err != nil {
			return u, err
		}
	}
	switch {
	case cfg == nil && u.query["units"] == "samples":
		u.kind = "cpu"
	case cfg["alloc_objects"].DisplayName == "" && hasKey(cfg, "alloc_objects"):
		u.kind = "heap"
	case hasKey(cfg, "goroutine"):
		u.kind = "goroutine"
	case cfg["contentions"].DisplayName == "mutex_count":
		u.kind = "mutex"
	case cfg["contentions"].DisplayName == "block_count":
		u.kind = "block"
	default:
		return u, errors.New("unclassified upload: " + string(stc))
	}
	return u, nil
}

func hasKey[V any](m map[string]V, k string) bool { _, ok := m[k]; return ok }

func (f *fakeIngest) snapshot() ([]ingestUpload, []error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ingestUpload(nil), f.uploads...), append([]error(nil), f.errs...)
}

// parseAppName splits app{k=v,...}.
func parseAppName(s string) (string, map[string]string) {
	name, rest, _ := strings.Cut(s, "{")
	tags := map[string]string{}
	for _, kv := range strings.Split(strings.TrimSuffix(rest, "}"), ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			tags[k] = v
		}
	}
	return name, tags
}

// profilingBusyWork burns CPU for d in a function the test can find in
// the CPU profile's stacks.
//
//go:noinline
func profilingBusyWork(d time.Duration) {
	sum := sha256.Sum256(nil)
	for end := time.Now().Add(d); time.Now().Before(end); {
		for range 1000 {
			sum = sha256.Sum256(sum[:])
		}
	}
	runtime.KeepAlive(sum)
}

func stopProfiler(t *testing.T, p *Profiler, budget time.Duration) (error, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	start := time.Now()
	err := p.Stop(ctx)
	return err, time.Since(start)
}

// waitStopped waits for the client to finish stopping in the background
// (CPU profiling is process-wide: the next test needs it free).
func waitStopped(t *testing.T, p *Profiler) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the pyroscope client did not finish stopping in the background")
	}
}

func TestProfilingOffWithoutAddress(t *testing.T) {
	p, err := Start(Options{Getenv: profEnv("PYROSCOPE_UPLOAD_INTERVAL", "bogus")})
	if err != nil {
		t.Fatal(err) // settings are not even read when off
	}
	if p.Enabled() || p.UploadErrors() != 0 {
		t.Fatal("profiling on without a server address")
	}
	ran := false
	proflabel.Do(context.Background(), "sample", func(ctx context.Context) {
		v, _ := pprof.Label(ctx, proflabel.Key)
		ran = v == "sample"
	})
	var nilP *Profiler
	proflabel.Do(context.Background(), "x", func(context.Context) {})
	if !ran {
		t.Fatal("Do did not run fn with the operation label while profiling is off")
	}
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := nilP.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestProfilingInvalidEnvNamesTheVariable(t *testing.T) {
	base := []string{"PYROSCOPE_SERVER_ADDRESS", "http://127.0.0.1:1"}
	for _, tc := range []struct{ key, val string }{
		{"PYROSCOPE_SERVER_ADDRESS", "127.0.0.1:4040"},
		{"PYROSCOPE_SERVER_ADDRESS", "ftp://example.com"},
		{"PYROSCOPE_UPLOAD_INTERVAL", "15"},
		{"PYROSCOPE_UPLOAD_INTERVAL", "100ms"},
		{"PYROSCOPE_PROFILE_TYPES", "cpu,wall"},
		{"PYROSCOPE_PROFILE_TYPES", " , "},
		{"PYROSCOPE_MUTEX_PROFILE_FRACTION", "-1"},
		{"PYROSCOPE_MUTEX_PROFILE_FRACTION", "often"},
		{"PYROSCOPE_BLOCK_PROFILE_RATE", "fast"},
		{"PYROSCOPE_BLOCK_PROFILE_RATE", "-5"},
		{"PYROSCOPE_APPLICATION_NAME", "my app"},
		{"PYROSCOPE_APPLICATION_NAME", "app{bad-key=1}"},
		{"PYROSCOPE_BASIC_AUTH_PASSWORD", ""}, // user without password
		{"PYROSCOPE_BASIC_AUTH_USER", ""},     // password without user
	} {
		kv := append([]string{}, base...)
		switch {
		case tc.key == "PYROSCOPE_BASIC_AUTH_PASSWORD":
			kv = append(kv, "PYROSCOPE_BASIC_AUTH_USER", "123")
		case tc.key == "PYROSCOPE_BASIC_AUTH_USER":
			kv = append(kv, "PYROSCOPE_BASIC_AUTH_PASSWORD", "secret-token")
		case tc.key == "PYROSCOPE_SERVER_ADDRESS":
			kv = nil
		}
		kv = append(kv, tc.key, tc.val)
		p, err := Start(Options{Getenv: profEnv(kv...), Logger: slog.New(slog.DiscardHandler)})
		if err == nil {
			_ = p.Stop(context.Background())
			t.Errorf("%s=%q: no error", tc.key, tc.val)
			continue
		}
		if !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s=%q: error does not name the variable: %v", tc.key, tc.val, err)
		}
		if strings.Contains(err.Error(), "secret-token") {
			t.Errorf("error leaks the password: %v", err)
		}
	}
}

func TestProfilingSettingsResolve(t *testing.T) {
	s, err := resolve(Options{
		Getenv: profEnv(
			"PYROSCOPE_SERVER_ADDRESS", "https://123:tok@profiles.example.net/",
			"PYROSCOPE_APPLICATION_NAME", "from-env",
			"PYROSCOPE_PROFILE_TYPES", "cpu, heap ,goroutines,mutex_count",
			"PYROSCOPE_BLOCK_PROFILE_RATE", "2ms",
		),
		ApplicationName: "", DefaultApplicationName: "ignored",
		Version: "v1.0.0+dirty", InstanceID: "abc", Hostname: "h{1},x=y",
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.ServerAddress != "https://profiles.example.net" || s.BasicAuthUser != "123" || s.basicAuthPassword != "tok" {
		t.Errorf("credentials not moved out of the URL: %q %q", s.ServerAddress, s.BasicAuthUser)
	}
	if s.ApplicationName != "from-env" || s.UploadInterval != 15*time.Second || s.UploadTimeout != 10*time.Second {
		t.Errorf("got %+v", s)
	}
	if got := len(s.ProfileTypes); got != 7 { // cpu, 4 heap, goroutine, mutex_count
		t.Errorf("profile types %v", s.ProfileTypes)
	}
	if s.BlockProfileRate != 2_000_000 || s.MutexProfileFraction != defaultMutexProfileFraction {
		t.Errorf("rates %d %d", s.BlockProfileRate, s.MutexProfileFraction)
	}
	if s.Tags["host"] != "h_1__x_y" || s.Tags["service_version"] != "v1.0.0+dirty" || s.Tags["service_instance_id"] != "abc" {
		t.Errorf("tags %v", s.Tags)
	}

	s, err = resolve(Options{
		Getenv:          profEnv("PYROSCOPE_SERVER_ADDRESS", "http://x", "PYROSCOPE_MUTEX_PROFILE_FRACTION", "0", "OTEL_SERVICE_NAME", "my svc"),
		ApplicationName: "",
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.ApplicationName != "my_svc" {
		t.Errorf("default app name %q", s.ApplicationName)
	}
	for _, pt := range s.ProfileTypes {
		if strings.HasPrefix(string(pt), "mutex") {
			t.Errorf("mutex types on with fraction 0: %v", s.ProfileTypes)
		}
	}
}

func TestProfilingUploadsEveryTypeWithTagsAuthAndLabels(t *testing.T) {
	ingest := newFakeIngest(t)
	logs := &profLogs{}
	p, err := Start(Options{
		Getenv: profEnv(
			"PYROSCOPE_SERVER_ADDRESS", ingest.URL,
			"PYROSCOPE_UPLOAD_INTERVAL", "1s",
			"PYROSCOPE_BASIC_AUTH_USER", "123456",
			"PYROSCOPE_BASIC_AUTH_PASSWORD", "glc_token",
			"PYROSCOPE_TENANT_ID", "tenant-a",
			"PYROSCOPE_MUTEX_PROFILE_FRACTION", "1",
		),
		DefaultApplicationName: "workerscope-test",
		Version:                "v1.2.3",
		InstanceID:             "5f0c-instance",
		Hostname:               "host-a",
		Logger:                 slog.New(logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Enabled() {
		t.Fatal("not enabled")
	}
	if got := runtime.SetMutexProfileFraction(-1); got != 1 {
		t.Errorf("mutex profile fraction %d while profiling, want 1", got)
	}

	// Supervisor-like work for ~2.5 s: CPU under operation=sample, lock
	// contention and channel waits under operation=rpc.
	ctx := context.Background()
	deadline := time.Now().Add(2500 * time.Millisecond)
	var wg sync.WaitGroup
	wg.Go(func() {
		proflabel.Do(ctx, "rpc", func(context.Context) {
			var mu sync.Mutex
			for time.Now().Before(deadline) {
				var inner sync.WaitGroup
				for range 4 {
					inner.Go(func() {
						for range 50 {
							mu.Lock()
							time.Sleep(20 * time.Microsecond)
							mu.Unlock()
						}
					})
				}
				inner.Wait()
				ch := make(chan struct{})
				time.AfterFunc(3*time.Millisecond, func() { close(ch) })
				<-ch // blocked ≥ 1 ms: always in the block profile
			}
		})
	})
	for time.Now().Before(deadline) {
		proflabel.Do(ctx, "sample", func(context.Context) { profilingBusyWork(100 * time.Millisecond) })
	}
	wg.Wait()

	err, took := stopProfiler(t, p, 10*time.Second)
	if err != nil {
		t.Fatalf("Stop: %v (after %v)\n%s", err, took, logs.dump())
	}
	waitStopped(t, p)

	uploads, errs := ingest.snapshot()
	for _, e := range errs {
		t.Errorf("bad upload: %v", e)
	}
	byKind := map[string][]ingestUpload{}
	for _, u := range uploads {
		byKind[u.kind] = append(byKind[u.kind], u)

		app, tags := parseAppName(u.name)
		if app != "workerscope-test" || tags["service_version"] != "v1.2.3" || tags["host"] != "host-a" || tags["service_instance_id"] != "5f0c-instance" {
			t.Errorf("%s upload: name %q lacks the app name or tags", u.kind, u.name)
		}
		for k, v := range tags {
			if v == strconv.Itoa(os.Getpid()) || strings.Contains(k, "pid") {
				t.Errorf("per-pid tag %s=%s in %q", k, v, u.name)
			}
		}
		if user, pass, ok := (&http.Request{Header: u.header}).BasicAuth(); !ok || user != "123456" || pass != "glc_token" {
			t.Errorf("%s upload: basic auth %q %q %v", u.kind, user, pass, ok)
		}
		if got := u.header.Get("X-Scope-OrgID"); got != "tenant-a" {
			t.Errorf("%s upload: X-Scope-OrgID %q", u.kind, got)
		}
		if u.query["from"] == "" || u.query["until"] == "" || u.query["spyName"] != "gospy" {
			t.Errorf("%s upload: query %v", u.kind, u.query)
		}
	}
	for _, kind := range []string{"cpu", "heap", "goroutine", "mutex", "block"} {
		if len(byKind[kind]) == 0 {
			t.Errorf("no %s profile arrived (got %d uploads)", kind, len(uploads))
		}
	}

	// Heap: all four sample types in one profile.
	for _, u := range byKind["heap"][:min(1, len(byKind["heap"]))] {
		var types []string
		for _, st := range u.prof.SampleType {
			types = append(types, st.Type)
		}
		if got := strings.Join(types, ","); got != "alloc_objects,alloc_space,inuse_objects,inuse_space" {
			t.Errorf("heap sample types %s", got)
		}
	}
	// Goroutines: this test's goroutines are in it.
	if gs := byKind["goroutine"]; len(gs) > 0 && len(gs[0].prof.Sample) == 0 {
		t.Error("goroutine profile has no samples")
	}
	// Mutex and block: the contention above was seen (summed over windows).
	for _, kind := range []string{"mutex", "block"} {
		n := 0
		for _, u := range byKind[kind] {
			for _, s := range u.prof.Sample {
				n += int(s.Value[0])
			}
		}
		if n == 0 {
			t.Errorf("%s profiles have no contention samples", kind)
		}
	}
	// CPU: samples of the busy function carry operation=sample.
	labelled, busy := 0, 0
	for _, u := range byKind["cpu"] {
		for _, s := range u.prof.Sample {
			inBusy := false
			for _, loc := range s.Location {
				for _, line := range loc.Line {
					if line.Function != nil && strings.HasSuffix(line.Function.Name, "profilingBusyWork") {
						inBusy = true
					}
				}
			}
			if !inBusy {
				continue
			}
			busy++
			if ops := s.Label[proflabel.Key]; len(ops) == 1 && ops[0] == "sample" {
				labelled++
			}
		}
	}
	t.Logf("uploads: cpu %d, heap %d, goroutine %d, mutex %d, block %d; busy CPU samples %d, labelled %d",
		len(byKind["cpu"]), len(byKind["heap"]), len(byKind["goroutine"]), len(byKind["mutex"]), len(byKind["block"]), busy, labelled)
	if busy == 0 || labelled != busy {
		t.Errorf("CPU samples in profilingBusyWork: %d, with operation=sample: %d", busy, labelled)
	}
	if logs.count(slog.LevelWarn, "Pyroscope") != 0 || logs.count(slog.LevelError, "") != 0 {
		t.Errorf("warnings or errors logged:\n%s", logs.dump())
	}
	if logs.count(slog.LevelInfo, "continuous profiling to Pyroscope on") != 1 {
		t.Errorf("no start line:\n%s", logs.dump())
	}
	if strings.Contains(logs.dump(), "glc_token") {
		t.Error("the password was logged")
	}
	if got := runtime.SetMutexProfileFraction(-1); got != 0 {
		t.Errorf("mutex profile fraction %d after Stop, want the previous 0", got)
	}
}

// appUnderProfiling runs supervisor-like work while profiling fails: the
// labelled work and an HTTP handler keep working, memory stays bounded.
func appUnderProfiling(t *testing.T, p *Profiler, d time.Duration) {
	t.Helper()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proflabel.Do(r.Context(), "GET /api/workers", func(ctx context.Context) { // as httpapi labels its routes
			if op, _ := pprof.Label(ctx, proflabel.Key); op != "GET /api/workers" {
				http.Error(w, "no label", http.StatusInternalServerError)
				return
			}
			_, _ = w.Write(bytes.Repeat([]byte("x"), 64<<10))
		})
	}))
	defer api.Close()

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ctx := context.Background()
	runs, served := 0, 0
	for end := time.Now().Add(d); time.Now().Before(end); {
		proflabel.Do(ctx, "sample", func(ctx context.Context) {
			if op, _ := pprof.Label(ctx, proflabel.Key); op == "sample" {
				runs++
			}
			profilingBusyWork(20 * time.Millisecond)
		})
		resp, err := http.Get(api.URL)
		if err != nil {
			t.Fatalf("app stopped serving: %v", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			served++
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if runs == 0 || served != runs {
		t.Errorf("work done %d times, requests served %d", runs, served)
	}
	if growth := int64(after.HeapInuse) - int64(before.HeapInuse); growth > 64<<20 {
		t.Errorf("heap in use grew by %d MiB while uploads failed", growth>>20)
	}
}

func TestProfilingServerRefusingConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connections are refused

	logs := &profLogs{}
	p, err := Start(Options{
		Getenv:     profEnv("PYROSCOPE_SERVER_ADDRESS", "http://"+addr, "PYROSCOPE_UPLOAD_INTERVAL", "1s"),
		InstanceID: "i", Logger: slog.New(logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	appUnderProfiling(t, p, 3500*time.Millisecond)
	t.Logf("failed uploads: %d", p.UploadErrors())
	if p.UploadErrors() == 0 {
		t.Error("no failed uploads counted")
	}
	// One warning for the first failure; the rest wait for the summary.
	if n := logs.count(slog.LevelWarn, "Pyroscope upload failed"); n != 1 {
		t.Errorf("%d first-failure warnings, want 1:\n%s", n, logs.dump())
	}
	if n := logs.count(slog.LevelWarn, "Pyroscope uploads still failing"); n != 0 {
		t.Errorf("summary logged before a minute passed:\n%s", logs.dump())
	}

	err, took := stopProfiler(t, p, 2*time.Second)
	if took > 3*time.Second {
		t.Errorf("Stop took %v with a 2s budget", took)
	}
	if err == nil || !strings.Contains(err.Error(), "failing at shutdown") {
		t.Errorf("Stop: %v, want the failing uploads reported", err)
	}
	waitStopped(t, p)
}

func TestProfilingServerHanging(t *testing.T) {
	// Accepts connections and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})

	logs := &profLogs{}
	p, err := Start(Options{
		Getenv: profEnv("PYROSCOPE_SERVER_ADDRESS", "http://"+ln.Addr().String(), "PYROSCOPE_UPLOAD_INTERVAL", "1s"),
		// The client's own default: longer than the stop budget below.
		UploadTimeout: 30 * time.Second,
		Logger:        slog.New(logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	appUnderProfiling(t, p, 3*time.Second)

	err, took := stopProfiler(t, p, 2*time.Second)
	if took > 3*time.Second {
		t.Errorf("Stop took %v with a 2s budget", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Stop: %v, want the budget's deadline", err)
	}
	if logs.count(slog.LevelWarn, "Pyroscope: shutdown budget ran out") != 1 {
		t.Errorf("abandoned upload not logged:\n%s", logs.dump())
	}
	// Abandoning cancels the pending uploads, so the client stops soon.
	waitStopped(t, p)
}

func TestProfilingRatesOnlyForEnabledTypes(t *testing.T) {
	ingest := newFakeIngest(t)
	prev := runtime.SetMutexProfileFraction(-1)
	p, err := Start(Options{
		Getenv: profEnv("PYROSCOPE_SERVER_ADDRESS", ingest.URL, "PYROSCOPE_UPLOAD_INTERVAL", "1s",
			"PYROSCOPE_PROFILE_TYPES", "goroutines,block"),
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := runtime.SetMutexProfileFraction(-1); got != prev {
		t.Errorf("mutex fraction changed to %d with mutex profiling off", got)
	}
	time.Sleep(1500 * time.Millisecond)
	if err, _ := stopProfiler(t, p, 5*time.Second); err != nil { // without cpu: no final flush, must not hang
		t.Fatal(err)
	}
	waitStopped(t, p)
	uploads, errs := ingest.snapshot()
	kinds := map[string]bool{}
	for _, u := range uploads {
		kinds[u.kind] = true
	}
	if len(errs) > 0 || !kinds["goroutine"] || !kinds["block"] || kinds["cpu"] || kinds["mutex"] || kinds["heap"] {
		t.Errorf("kinds %v, errors %v", kinds, errs)
	}
}

// TestProfilingClientLogRouting: failed uploads are counted once, by the
// HTTP client, not again from the client's log line; a dropped profile
// counts as a failed upload; other client errors are logged once, then at
// most once a minute; debug and info lines go to debug.
func TestProfilingClientLogRouting(t *testing.T) {
	logs := &profLogs{}
	now := time.Unix(1_000_000, 0)
	clock := func() time.Time { return now }
	uploads := newUploadLog(slog.New(logs), "http://x", clock)
	l := newPyroscopeLogger(slog.New(logs), uploads, clock)

	l.Errorf("upload profile: %v", errors.New("do http request: connection refused"))
	if uploads.Failures() != 0 || logs.count(slog.LevelWarn, "Pyroscope upload failed") != 0 {
		t.Fatalf("the client's upload-failure line was counted again:\n%s", logs.dump())
	}
	l.Errorf(pyroscopeQueueFull)
	if uploads.Failures() != 1 || logs.count(slog.LevelWarn, "Pyroscope upload failed") != 1 {
		t.Fatalf("a dropped profile is not a counted failed upload:\n%s", logs.dump())
	}
	for range 5 {
		l.Errorf("failed to dump heap profile: %s", "boom")
	}
	l.Infof("starting profiling session:")
	l.Debugf("uploading at %s", "http://x/ingest")
	if logs.count(slog.LevelWarn, "Pyroscope client error") != 1 ||
		logs.count(slog.LevelDebug, "pyroscope: ") != 3 || logs.count(slog.LevelInfo, "pyroscope:") != 0 {
		t.Errorf("log levels:\n%s", logs.dump())
	}
	now = now.Add(time.Minute)
	l.Errorf("failed to dump heap profile: %s", "boom")
	if logs.count(slog.LevelWarn, "Pyroscope client errors continue") != 1 {
		t.Errorf("no summary after a minute:\n%s", logs.dump())
	}
}

// TestProfilingUploadClientCounts: the HTTP client the Pyroscope client
// uploads through counts refused connections and non-200 answers, and
// logs the recovery when uploads work again.
func TestProfilingUploadClientCounts(t *testing.T) {
	status := http.StatusInternalServerError
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.WriteHeader(status)
	}))
	defer srv.Close()
	logs := &profLogs{}
	uploads := newUploadLog(slog.New(logs), srv.URL, nil)
	c := &uploadClient{ctx: context.Background(), uploads: uploads, client: newUploadHTTPClient(2 * time.Second)}
	do := func(url string) {
		req, _ := http.NewRequest(http.MethodPost, url, nil)
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	do(srv.URL)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	refused := "http://" + ln.Addr().String()
	ln.Close()
	do(refused)
	if uploads.Failures() != 2 {
		t.Fatalf("failures %d, want 2 (a 500 and a refused connection)", uploads.Failures())
	}
	mu.Lock()
	status = http.StatusOK
	mu.Unlock()
	do(srv.URL)
	if uploads.Failures() != 2 || uploads.Err() != nil || logs.count(slog.LevelInfo, "Pyroscope uploads recovered") != 1 {
		t.Fatalf("after a 200: failures %d, err %v\n%s", uploads.Failures(), uploads.Err(), logs.dump())
	}
}

func TestProfilingLocalCPUProfileWhileContinuous(t *testing.T) {
	ingest := newFakeIngest(t)
	logs := &profLogs{}
	p, err := Start(Options{
		Getenv: profEnv("PYROSCOPE_SERVER_ADDRESS", ingest.URL, "PYROSCOPE_UPLOAD_INTERVAL", "1s", "PYROSCOPE_PROFILE_TYPES", "cpu"),
		Logger: slog.New(logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer waitStopped(t, p)
	defer func() { _, _ = stopProfiler(t, p, 5*time.Second) }()
	waitUploads := func(n int) {
		t.Helper()
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			if ups, _ := ingest.snapshot(); len(ups) >= n {
				return
			}
		}
		t.Fatalf("fewer than %d CPU uploads", n)
	}
	waitUploads(1) // the background CPU profile is running

	// Go allows one CPU profile at a time: net/http/pprof.Profile would
	// answer 500 here, or (racing the collector's restart every interval)
	// stop the background profile. CPUProfileHandler takes turns.
	go proflabel.Do(context.Background(), "sample", func(context.Context) { profilingBusyWork(500 * time.Millisecond) })
	rec := httptest.NewRecorder()
	report.CPUProfile().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/pprof/profile?seconds=1", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("CPUProfileHandler: %d %s", rec.Code, rec.Body)
	}
	prof, err := profile.ParseData(rec.Body.Bytes())
	if err != nil || len(prof.SampleType) == 0 || prof.SampleType[len(prof.SampleType)-1].Type != "cpu" {
		t.Fatalf("CPUProfileHandler: not a CPU profile: %v", err)
	}
	if logs.count(slog.LevelDebug, "pyroscope: cpu profile collector interrupted with StartCPUProfile") != 1 {
		t.Errorf("the local profile did not go through the collector:\n%s", logs.dump())
	}
	// Continuous profiling carries on afterwards.
	ups, _ := ingest.snapshot()
	waitUploads(len(ups) + 2)
}
