//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/workerscope/workerscope/deploy/kubernetes/render"
)

const routingInstances = 3

// nginxRouter is deploy/nginx/workerscope.conf rendered for this test and
// run in the foreground.
type nginxRouter struct {
	*proc
	url string
}

// renderNginxConf is deploy/nginx/workerscope.conf with its placeholders
// filled in, as its install instruction says (listen address and the
// supervisors' host:port); it fails on a placeholder left over.
func renderNginxConf(t testing.TB, listen string, upstreams []string) string {
	t.Helper()
	tmpl, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "nginx", "workerscope.conf"))
	if err != nil {
		t.Fatal(err)
	}
	repl := []string{"@LISTEN@", listen}
	for i, u := range upstreams {
		repl = append(repl, fmt.Sprintf("@INSTANCE%d@", i), u)
	}
	conf := strings.NewReplacer(repl...).Replace(string(tmpl))
	if left := nginxPlaceholder.FindAllString(render.StripComments(conf), -1); len(left) > 0 {
		t.Fatalf("placeholders left in deploy/nginx/workerscope.conf after filling in %d upstreams: %v", len(upstreams), left)
	}
	return conf
}

var nginxPlaceholder = regexp.MustCompile(`@[A-Z0-9_]+@`)

// startNginx runs nginx in the foreground with every path in a temp dir:
// a minimal nginx.conf of the test's own (pid, logs, temp paths, events)
// includes the shipped file in http{}, where its install instruction puts
// it (TestNginxConfInDebianConfD checks the same with Debian's stock
// nginx.conf).
func startNginx(t *testing.T, upstreams []string) *nginxRouter {
	t.Helper()
	return startNginxSite(t, func(listen string) string { return renderNginxConf(t, listen, upstreams) })
}

// startNginxSite is startNginx with the site file given by the caller,
// rendered for the listen address (host:port) nginx is to use.
func startNginxSite(t *testing.T, siteFor func(listen string) string) *nginxRouter {
	t.Helper()
	bin := requiredTool(t, "WORKERSCOPE_NGINX", "nginx", "apt-get install nginx", "/usr/sbin/nginx")
	dir := t.TempDir()
	listen := freePort(t)
	site := filepath.Join(dir, "workerscope.conf")
	if err := os.WriteFile(site, []byte(siteFor(listen)), 0o644); err != nil {
		t.Fatal(err)
	}
	mainConf := fmt.Sprintf(`worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events {
    worker_connections 4096;
}
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[2]s;
}
`, dir, site)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(mainConf), 0o644); err != nil {
		t.Fatal(err)
	}
	global := "daemon off;"
	if os.Geteuid() == 0 {
		// As root, nginx's workers would switch to "nobody", who cannot
		// use the temp dir; stay root in the test.
		global += " user root;"
	}
	// -e: the error log before the config is read (else /var/log/nginx).
	p := start(t, bin, nil, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", path, "-g", global)
	url := "http://" + listen
	waitFor(t, 15*time.Second, "nginx to listen", func() bool {
		resp, err := http.Get(url + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, p)
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx error.log:\n%s", tail(string(b), 4000))
		}
	})
	return &nginxRouter{proc: p, url: url}
}

// TestRoutingConsistentHashThroughNginx runs three supervisors behind the
// shipped nginx config: each session sticks to one worker, the
// per-instance endpoints reach their instance, SSE streams through, and
// stopping one supervisor moves only its sessions, which respawn on their
// new owner, leaving no worker process behind anywhere.
func TestRoutingConsistentHashThroughNginx(t *testing.T) {
	apps, upstreams := startRoutingInstances(t, routingInstances)
	checkRoutingThroughNginx(t, apps, startNginx(t, upstreams))
}

// startRoutingInstances starts n supervisors on loopback ports and returns
// them with their host:port.
func startRoutingInstances(t *testing.T, n int) ([]*app, []string) {
	t.Helper()
	bin := workerscopeBinary(t)
	apps := make([]*app, n)
	upstreams := make([]string, n)
	for i := range apps {
		// No collector here: OTLP export off (the fleet telemetry test covers it).
		apps[i] = startAppBin(t, bin, []string{"OTEL_METRICS_EXPORTER=none"}, "--max-workers", "64", "--idle-ttl", "0")
		upstreams[i] = strings.TrimPrefix(apps[i].url, "http://")
	}
	return apps, upstreams
}

// routingResult is what checkRoutingThroughNginx saw: sessions per
// instance, and how many moved when it stopped one.
type routingResult struct {
	perInstance []int
	moved       int
}

// checkRoutingThroughNginx: apps[i] is the i-th upstream of the config lb
// serves (its /i/<i>/). 60 sessions stick to one worker each, on exactly
// one instance; the per-instance endpoints reach their instance; an event
// stream passes unbuffered; stopping instance 1 moves exactly its
// sessions, which respawn on a survivor and stay there; every instance is
// stopped at the end and no worker process remains.
func checkRoutingThroughNginx(t *testing.T, apps []*app, lb *nginxRouter) routingResult {
	t.Helper()
	lbApp := &app{proc: lb.proc, url: lb.url} // app.do/rpc against nginx
	instances := len(apps)

	// The token is passed through: without it workerscope itself answers 401.
	if resp, err := http.Post(lb.url+"/api/sessions/s00/rpc", "application/json", strings.NewReader(`{"type":"get_state"}`)); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("without a token through nginx: %d, want 401 from workerscope", resp.StatusCode)
		}
	}

	const sessions = 60
	keys := make([]string, sessions)
	for i := range keys {
		keys[i] = fmt.Sprintf("session-%02d", i)
	}
	pidOf := func(key string) int {
		r := lbApp.rpc(t, key, `{"type":"get_state"}`)
		data, _ := r["data"].(map[string]any)
		pid, _ := data["pid"].(float64)
		if pid == 0 {
			t.Fatalf("get_state of %s through nginx: no pid in %v", key, r)
		}
		return int(pid)
	}

	// Every repeated command of a session reaches the same worker.
	first := map[string]int{}
	for round := 0; round < 3; round++ {
		for _, k := range keys {
			pid := pidOf(k)
			if round == 0 {
				first[k] = pid
			} else if pid != first[k] {
				t.Fatalf("session %s: round %d reached pid %d, first pid %d", k, round, pid, first[k])
			}
		}
	}

	// Each session lives on exactly one instance, the one whose worker
	// answered, seen through that instance's /i/<n>/ endpoints.
	owner := map[string]int{}
	prefixes := make([]string, instances)
	perInstance := make([]int, instances)
	instanceWorkers := func(i int) map[string]workerInfo {
		t.Helper()
		return (&app{url: lb.url + fmt.Sprintf("/i/%d", i)}).workers(t)
	}
	for i := range apps {
		ws := instanceWorkers(i)
		direct := apps[i].workers(t)
		if len(ws) != len(direct) {
			t.Fatalf("/i/%d/api/workers lists %d workers, instance %d itself %d", i, len(ws), i, len(direct))
		}
		for k, w := range ws {
			if prev, dup := owner[k]; dup {
				t.Fatalf("session %s has a worker on instance %d and %d", k, prev, i)
			}
			owner[k] = i
			if w.PID != first[k] {
				t.Fatalf("session %s: instance %d's worker pid %d, get_state said %d", k, i, w.PID, first[k])
			}
			prefixes[i] = instancePrefix(w.ID)
		}
		perInstance[i] = len(ws)
	}
	if len(owner) != sessions {
		t.Fatalf("%d sessions have a worker, want %d", len(owner), sessions)
	}
	t.Logf("sessions per instance: %v", perInstance)
	for i, n := range perInstance {
		if n == 0 {
			t.Fatalf("instance %d owns no session of %d: the hash does not spread keys (%v)", i, sessions, perInstance)
		}
	}

	// /i/<n>/api/metrics and /i/<n>/metrics reach instance n; the
	// pool-wide paths are not load-balanced.
	for i := range apps {
		code, b := httpDo(t, "GET", lb.url+fmt.Sprintf("/i/%d/api/metrics", i), "")
		var m struct {
			Workers []struct {
				ID string `json:"id"`
			} `json:"workers"`
		}
		if code != 200 || json.Unmarshal(b, &m) != nil {
			t.Fatalf("/i/%d/api/metrics: %d %.300s", i, code, b)
		}
		if len(m.Workers) != perInstance[i] {
			t.Fatalf("/i/%d/api/metrics: %d workers, want %d", i, len(m.Workers), perInstance[i])
		}
		for _, w := range m.Workers {
			if instancePrefix(w.ID) != prefixes[i] {
				t.Fatalf("/i/%d/api/metrics lists worker %s of another instance", i, w.ID)
			}
		}
		req, _ := http.NewRequest("GET", lb.url+fmt.Sprintf("/i/%d/metrics", i), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Accept", "text/plain")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("/i/%d/metrics: %d", i, resp.StatusCode)
		}
	}
	if code, b := httpDo(t, "GET", lb.url+"/api/workers", ""); code != 404 || !strings.Contains(string(b), "/i/<n>/api/workers") {
		t.Fatalf("/api/workers through nginx: %d %s, want 404 naming /i/<n>/api/workers", code, b)
	}

	// Server-Sent Events stream through nginx unbuffered: the stream opens
	// at once and a prompt's events arrive, ending with agent_end.
	sse := openSSE(t, lb.url+"/api/sessions/"+keys[0]+"/events")
	if ct := sse.resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("events through nginx: Content-Type %q", ct)
	}
	if ce := sse.resp.Header.Get("Content-Encoding"); ce != "" {
		t.Fatalf("events through nginx: Content-Encoding %q, want none", ce)
	}
	sse.next(t, 10*time.Second, "the connected comment", func(l string) bool { return strings.HasPrefix(l, ":") })
	lbApp.rpc(t, keys[0], `{"type":"prompt","message":"hi","cpu_ms":50}`)
	sse.next(t, 10*time.Second, "agent_end", func(l string) bool { return eventType(l) == "agent_end" })

	// Stop one supervisor: only its sessions move, to the next supervisor
	// on the ring, where the next command respawns them.
	const victim = 1
	apps[victim].stop(t, 20*time.Second)
	waitFor(t, 5*time.Second, fmt.Sprintf("instance %d's worker processes to be gone after it stopped", victim), func() bool {
		return len(workerMarkers(prefixes[victim])) == 0
	})
	moved := map[string]bool{}
	for _, k := range keys {
		pid := pidOf(k)
		switch {
		case owner[k] == victim && pid == first[k]:
			t.Fatalf("session %s of the stopped instance still answered from pid %d", k, pid)
		case owner[k] == victim:
			moved[k] = true
			first[k] = pid
		case pid != first[k]:
			t.Fatalf("session %s of instance %d moved (pid %d → %d) when instance %d stopped", k, owner[k], first[k], pid, victim)
		}
	}
	if len(moved) != perInstance[victim] {
		t.Fatalf("%d sessions moved, instance %d owned %d", len(moved), victim, perInstance[victim])
	}
	if limit := sessions/instances + sessions/6; len(moved) > limit {
		t.Fatalf("%d of %d sessions moved when one of %d instances stopped (limit %d)", len(moved), sessions, instances, limit)
	}
	result := routingResult{perInstance: perInstance, moved: len(moved)}
	t.Logf("stopping instance %d of %d moved %d of %d sessions (all of its own, none of the others)", victim, instances, len(moved), sessions)
	// The moved sessions respawned on a surviving instance and stay there.
	for i := range apps {
		if i == victim {
			continue
		}
		for k, w := range instanceWorkers(i) {
			if moved[k] && w.PID != first[k] {
				t.Fatalf("moved session %s: instance %d's worker pid %d, get_state said %d", k, i, w.PID, first[k])
			}
			delete(moved, k)
		}
	}
	if len(moved) > 0 {
		t.Fatalf("moved sessions without a worker on a surviving instance: %v", moved)
	}
	for _, k := range keys {
		if pid := pidOf(k); pid != first[k] {
			t.Fatalf("session %s after the move: pid %d, then %d", k, first[k], pid)
		}
	}

	// Nothing leaks: stopping the rest leaves no worker process of any instance.
	for i, a := range apps {
		if i != victim {
			a.stop(t, 20*time.Second)
		}
	}
	waitFor(t, 10*time.Second, "every worker process of every instance to be gone", func() bool {
		return len(workerMarkers(prefixes...)) == 0
	})
	return result
}
