//go:build linux

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// TestKubeletPlaysTheManifest starts the binary the way the kubelet would
// from deploy/kubernetes/base/workerscope.yaml: the container's args, its
// environment resolved as Kubernetes resolves it (secret and field
// references, resource fields, $(VAR) expansion) and nothing else, its
// securityContext's uid and gid, its volumes as fresh directories. It then
// runs the startup, readiness and liveness probes with their periods,
// timeouts and thresholds, and on SIGTERM requires what the manifest
// promises: readiness turns 503 at the next readiness probe, while sessions
// and event streams are still served for as long as the kubelet and the
// endpoints need to notice (period × failureThreshold); liveness never
// fails; the process exits 0 within terminationGracePeriodSeconds with its
// worker trees gone. The only departures from a pod: loopback instead of
// the pod IP (tests listen on 127.0.0.1), a real collector on a free port
// standing in for the agent sidecar, and TMPDIR for the /tmp emptyDir.
func TestKubeletPlaysTheManifest(t *testing.T) {
	sts := manifestStatefulSet(t)
	pod := sts.Spec.Template.Spec
	c := containerNamed(t, pod.Containers, "workerscope")
	if c.StartupProbe == nil || c.ReadinessProbe == nil || c.LivenessProbe == nil {
		t.Fatal("the workerscope container lacks a startup, readiness or liveness probe")
	}
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
		t.Fatal("the container has a preStop hook this test does not play; teach it")
	}
	grace := 30 * time.Second // Kubernetes' default
	if pod.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
	}

	uid, gid := 0, 0
	if sc := pod.SecurityContext; sc != nil && sc.RunAsUser != nil {
		uid = int(*sc.RunAsUser)
		if sc.RunAsGroup != nil {
			gid = int(*sc.RunAsGroup)
		}
	}
	if uid != 0 && os.Geteuid() != 0 {
		t.Skipf("the manifest runs as uid %d; playing it needs root", uid)
	}

	bin := workerscopeBinary(t) // the image: readable and executable by the pod's uid
	// Volumes: each mount a fresh directory the pod's uid owns (fsGroup).
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		d := publicDir(t, uid)
		if err := os.Chown(d, uid, gid); err != nil {
			t.Fatal(err)
		}
		mounts[m.MountPath] = d
	}

	listen := freePort(t)
	col := startCollector(t, freePort(t), filepath.Join(t.TempDir(), "otlp.json"))
	secret := "kubelet-e2e-token-0123456789abcdef"
	env := resolveEnv(t, c, map[string]string{"metadata.name": sts.Name + "-0", "metadata.namespace": "e2e"}, secret)
	for i, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case k == "WORKERSCOPE_LISTEN":
			env[i] = k + "=" + listen // the pod IP's stand-in
		case k == "OTEL_EXPORTER_OTLP_ENDPOINT":
			env[i] = k + "=http://" + col.grpc // the agent sidecar's stand-in
		case mounts[v] != "":
			env[i] = k + "=" + mounts[v] // HOME on its emptyDir
		}
	}
	env = append(env, "PATH=/usr/local/bin:/usr/bin:/bin")
	if d := mounts["/tmp"]; d != "" {
		env = append(env, "TMPDIR="+d)
	}

	p := &proc{cmd: exec.Command(bin, c.Args...)}
	p.cmd.Env = env
	p.cmd.Dir = "/"
	p.cmd.Stdout, p.cmd.Stderr = p, p
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if uid != 0 {
		p.cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- p.cmd.Wait() }()
	t.Cleanup(func() { // as the kubelet would after the grace period
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
		}
		removeLeftoverCgroups(p.output())
	})
	base := "http://" + listen

	// Startup: the kubelet restarts the container after failureThreshold
	// failed probes in a row.
	startup := c.StartupProbe
	for fails := 0; ; {
		code, _ := probe(t, base, c, startup)
		if code >= 200 && code < 400 {
			break
		}
		fails++
		if fails >= int(startup.FailureThreshold) {
			t.Fatalf("startup probe %s failed %d times in a row (every %ds): the kubelet restarts the container\n%s",
				startup.HTTPGet.Path, fails, startup.PeriodSeconds, tail(p.output(), 40))
		}
		select {
		case err := <-exited:
			t.Fatalf("exited during start-up: %v\n%s", err, tail(p.output(), 40))
		case <-time.After(time.Duration(startup.PeriodSeconds) * time.Second):
		}
	}

	// Readiness and liveness, each on its own period, from now until exit.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := newProber(ctx, t, base, c, c.ReadinessProbe)
	live := newProber(ctx, t, base, c, c.LivenessProbe)
	waitFor(t, 2*time.Duration(c.ReadinessProbe.PeriodSeconds)*time.Second, "the readiness probe to pass", func() bool {
		return ready.passedOnce()
	}, p)

	// Sessions: a few workers, one of them with a child, and an event stream.
	a := &app{proc: p, url: base}
	authed := func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+secret) }
	rpc := func(key, cmd string) (int, string) {
		rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer rcancel()
		req, _ := http.NewRequestWithContext(rctx, http.MethodPost, base+"/api/sessions/"+key+"/rpc", strings.NewReader(cmd))
		authed(req)
		return statusBody(http.DefaultClient.Do(req))
	}
	for _, key := range []string{"alice", "bob", "carol"} {
		if code, body := rpc(key, `{"type":"prompt","message":"hi","cpu_ms":20,"child_ms":60000}`); code != http.StatusOK {
			t.Fatalf("prompt %s: %d %s", key, code, body)
		}
	}
	events := openStream(t, base+"/api/sessions/alice/events", authed)
	var tree []pidStart
	waitFor(t, 10*time.Second, "three workers, each with its child", func() bool {
		tree = tree[:0]
		for _, w := range a.workersAuth(t, secret) {
			tree = append(tree, treePIDs(w.PID)...)
		}
		return len(tree) >= 6
	}, p)

	// SIGTERM, as the kubelet sends it when the pod is deleted.
	term := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	readyPeriod := time.Duration(c.ReadinessProbe.PeriodSeconds) * time.Second
	// The signal is delivered asynchronously; the kubelet's next readiness
	// probe comes at most one period later, and must fail.
	var code int
	var body string
	for deadline := term.Add(readyPeriod); ; time.Sleep(50 * time.Millisecond) {
		code, body = probe(t, base, c, c.ReadinessProbe)
		if code == http.StatusServiceUnavailable && strings.Contains(body, "shutting_down") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readiness probe %s after SIGTERM: %d %s, want 503 shutting_down within one period (%s)",
				time.Since(term).Round(time.Millisecond), code, body, readyPeriod)
		}
	}
	// Until the kubelet has seen failureThreshold failures (and the
	// endpoints dropped the pod), traffic still arrives and is served.
	unreadyBy := term.Add(readyPeriod * time.Duration(c.ReadinessProbe.FailureThreshold))
	endsBefore := events.count("agent_end")
	for i := 0; time.Now().Before(unreadyBy); i++ {
		for key, cmd := range map[string]string{
			"alice":                   `{"type":"prompt","message":"still here?","cpu_ms":5,"events":2}`,
			fmt.Sprintf("late-%d", i): `{"type":"get_state"}`,
		} {
			if code, body := rpc(key, cmd); code != http.StatusOK {
				t.Fatalf("%s after SIGTERM, %s before the kubelet marks the pod unready: %d %s",
					key, time.Until(unreadyBy).Round(time.Millisecond), code, body)
			}
		}
		select {
		case err := <-events.done:
			t.Fatalf("the event stream ended %s after SIGTERM, before the pod was unready: %v", time.Since(term), err)
		default:
		}
		time.Sleep(500 * time.Millisecond)
	}
	if events.count("agent_end") <= endsBefore {
		t.Errorf("the event stream delivered no run's events while draining")
	}

	// Exit within the grace period, or the kubelet sends SIGKILL.
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, tail(p.output(), 40))
		}
		t.Logf("exited %s after SIGTERM (terminationGracePeriodSeconds %s)", time.Since(term).Round(100*time.Millisecond), grace)
	case <-time.After(time.Until(term.Add(grace))):
		t.Fatalf("still running %s after SIGTERM: the kubelet would SIGKILL it\n%s", grace, tail(p.output(), 40))
	}
	cancel()
	if f := live.failures(); len(f) > 0 {
		t.Errorf("liveness probe failed during the run (%d times; first %s): the kubelet would restart a draining pod", len(f), f[0])
	}
	if !ready.failedAfter(term) {
		t.Errorf("the readiness prober never saw the pod unready after SIGTERM")
	}
	for _, ps := range tree {
		if ps.alive() {
			t.Errorf("process %d of a worker tree outlived the pod's main process", ps.pid)
		}
	}
	if !strings.Contains(p.output(), "draining") {
		t.Errorf("no drain log line:\n%s", tail(p.output(), 20))
	}
}

// manifestStatefulSet decodes the StatefulSet of the shipped manifest.
func manifestStatefulSet(t *testing.T) *appsv1.StatefulSet {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "kubernetes", "base", "workerscope.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatal(err)
		}
		if meta.Kind != "StatefulSet" {
			continue
		}
		var sts appsv1.StatefulSet
		if err := yaml.UnmarshalStrict([]byte(doc), &sts); err != nil {
			t.Fatal(err)
		}
		return &sts
	}
	t.Fatal("no StatefulSet in deploy/kubernetes/base/workerscope.yaml")
	return nil
}

func containerNamed(t *testing.T, cs []corev1.Container, name string) *corev1.Container {
	t.Helper()
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	t.Fatalf("no container %q", name)
	return nil
}

var k8sVarRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// resolveEnv is the container's environment as the kubelet builds it:
// literal values with $(VAR) references to earlier variables expanded,
// secret keys (every one is the test's token), downward-API fields and
// resource fields. Nothing of the host's environment is inherited.
func resolveEnv(t *testing.T, c *corev1.Container, fields map[string]string, secret string) []string {
	t.Helper()
	seen := map[string]string{}
	var out []string
	for _, e := range c.Env {
		var v string
		switch {
		case e.ValueFrom == nil:
			v = k8sVarRef.ReplaceAllStringFunc(e.Value, func(ref string) string {
				if x, ok := seen[ref[2:len(ref)-1]]; ok {
					return x
				}
				return ref // Kubernetes leaves unknown references as they are
			})
		case e.ValueFrom.SecretKeyRef != nil:
			v = secret
		case e.ValueFrom.FieldRef != nil:
			x, ok := fields[e.ValueFrom.FieldRef.FieldPath]
			if !ok {
				t.Fatalf("env %s: field %s not played by this test", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
			v = x
		case e.ValueFrom.ResourceFieldRef != nil:
			rf := e.ValueFrom.ResourceFieldRef
			kind, res, _ := strings.Cut(rf.Resource, ".")
			list := c.Resources.Requests
			if kind == "limits" {
				list = c.Resources.Limits
			}
			q, ok := list[corev1.ResourceName(res)]
			if !ok {
				t.Fatalf("env %s: %s not set on the container", e.Name, rf.Resource)
			}
			v = strconv.FormatInt(q.Value(), 10)
		default:
			t.Fatalf("env %s: a source this test does not play", e.Name)
		}
		seen[e.Name] = v
		out = append(out, e.Name+"="+v)
	}
	return out
}

// probe runs one HTTP probe as the kubelet does (its timeout; any status
// in [200, 400) passes; the named port is the container's http port).
func probe(t *testing.T, base string, c *corev1.Container, p *corev1.Probe) (int, string) {
	t.Helper()
	if p.HTTPGet == nil {
		t.Fatalf("probe %+v is not httpGet", p)
	}
	if pt := p.HTTPGet.Port; pt.Type == intstr.String && !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == pt.StrVal }) {
		t.Fatalf("probe port %q names no container port", pt.StrVal)
	}
	timeout := time.Duration(max(p.TimeoutSeconds, 1)) * time.Second
	client := &http.Client{Timeout: timeout}
	return statusBody(client.Get(base + p.HTTPGet.Path))
}

// statusBody is a response's status and body, or 0 and the error.
func statusBody(resp *http.Response, err error) (int, string) {
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// prober runs one probe on its period until ctx ends, keeping results.
type prober struct {
	mu      sync.Mutex
	results []probeResult
}

type probeResult struct {
	at   time.Time
	code int
	body string
}

func (r probeResult) String() string {
	return fmt.Sprintf("%s: %d %s", r.at.Format("15:04:05.000"), r.code, strings.TrimSpace(r.body))
}

func newProber(ctx context.Context, t *testing.T, base string, c *corev1.Container, p *corev1.Probe) *prober {
	pr := &prober{}
	period := time.Duration(max(p.PeriodSeconds, 1)) * time.Second
	go func() {
		tk := time.NewTicker(period)
		defer tk.Stop()
		for {
			code, body := probe(t, base, c, p)
			if ctx.Err() != nil {
				return
			}
			pr.mu.Lock()
			pr.results = append(pr.results, probeResult{time.Now(), code, body})
			pr.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
		}
	}()
	return pr
}

func (pr *prober) passedOnce() bool {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return slices.ContainsFunc(pr.results, func(r probeResult) bool { return r.code >= 200 && r.code < 400 })
}

// failures are the failed probes while the process still answered
// (a refused connection after exit is not a liveness failure of a
// running container).
func (pr *prober) failures() []probeResult {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	var out []probeResult
	for _, r := range pr.results {
		if r.code != 0 && (r.code < 200 || r.code >= 400) {
			out = append(out, r)
		}
	}
	return out
}

func (pr *prober) failedAfter(t0 time.Time) bool {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return slices.ContainsFunc(pr.results, func(r probeResult) bool { return r.at.After(t0) && r.code == http.StatusServiceUnavailable })
}

// eventLines reads an event stream in the background, keeping its lines.
type eventLines struct {
	mu   sync.Mutex
	all  []string
	done chan error
}

func openStream(t *testing.T, url string, auth func(*http.Request)) *eventLines {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	auth(req)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("events: %d", resp.StatusCode)
	}
	s := &eventLines{done: make(chan error, 1)}
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			s.mu.Lock()
			s.all = append(s.all, sc.Text())
			s.mu.Unlock()
		}
		s.done <- fmt.Errorf("stream ended: %v", sc.Err())
	}()
	return s
}

func (s *eventLines) count(sub string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, l := range s.all {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

func (s *eventLines) lines() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.all)
}

// pidStart names a process across PID reuse.
type pidStart struct {
	pid   int
	start string // field 22 of /proc/PID/stat
}

func (p pidStart) alive() bool {
	return startTime(p.pid) == p.start
}

func startTime(pid int) string {
	f := procStat(pid)
	if len(f) < 20 {
		return ""
	}
	return f[19]
}

// treePIDs is pid and its descendants, from /proc/PID/task/*/children.
func treePIDs(pid int) []pidStart {
	var out []pidStart
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		st := startTime(p)
		if st == "" {
			continue
		}
		out = append(out, pidStart{p, st})
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", p))
		for _, f := range tasks {
			b, _ := os.ReadFile(f)
			for _, c := range strings.Fields(string(b)) {
				if n, err := strconv.Atoi(c); err == nil {
					queue = append(queue, n)
				}
			}
		}
	}
	return out
}

// workersAuth is GET /api/workers with the given token.
func (a *app) workersAuth(t testing.TB, tok string) []workerInfo {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, a.url+"/api/workers", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Workers []workerInfo `json:"workers"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return body.Workers
}
