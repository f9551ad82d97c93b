package kubernetes_test

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/workerscope/workerscope/deploy/kubernetes/render"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// routerConf is the nginx config the router Deployment of a rendered
// kustomization mounts in /etc/nginx/conf.d/.
func routerConf(t *testing.T, o *objects) (*appsv1.Deployment, *corev1.ConfigMap, string) {
	t.Helper()
	d := o.deployments["workerscope-router"]
	if d == nil {
		t.Fatal("no Deployment workerscope-router")
	}
	c := container(t, d.Spec.Template.Spec.Containers, "nginx")
	i := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == "/etc/nginx/conf.d" })
	if i < 0 {
		t.Fatal("the router mounts nothing in /etc/nginx/conf.d")
	}
	j := slices.IndexFunc(d.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == c.VolumeMounts[i].Name })
	v := d.Spec.Template.Spec.Volumes[j]
	if v.ConfigMap == nil || o.configMaps[v.ConfigMap.Name] == nil {
		t.Fatalf("the router's conf.d volume is not a ConfigMap of the kustomization: %+v", v)
	}
	cm := o.configMaps[v.ConfigMap.Name]
	conf, ok := cm.Data["workerscope.conf"]
	if !ok {
		t.Fatalf("ConfigMap %s has no workerscope.conf", cm.Name)
	}
	return d, cm, conf
}

var (
	upstreamBlock = regexp.MustCompile(`(?ms)^upstream (\w+) \{(.*?)\}`)
	serverLine    = regexp.MustCompile(`(?m)\bserver ([^ ;]+)`)
	podDNSName    = regexp.MustCompile(`^([a-z0-9-]+)-(\d+)\.([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local:(\d+)$`)
	instanceLoc   = regexp.MustCompile(`(?m)^\s*location /i/(\d+)/ \{ proxy_pass http://workerscope_(\d+)/;`)
)

// upstreams parses the server addresses of each upstream block.
func upstreams(conf string) map[string][]string {
	out := map[string][]string{}
	for _, m := range upstreamBlock.FindAllStringSubmatch(conf, -1) {
		for _, s := range serverLine.FindAllStringSubmatch(m[2], -1) {
			out[m[1]] = append(out[m[1]], s[1])
		}
	}
	return out
}

// The router's upstreams are exactly the StatefulSet's pods, by the DNS
// names its headless Service gives them, in the base and in the overlay,
// and the overlay's different replica count re-rendered them.
func TestRouterUpstreamsMatchStatefulSet(t *testing.T) {
	replicas := map[string]int{}
	for _, target := range targets {
		t.Run(path.Base(target), func(t *testing.T) {
			o := load(t, target)
			ss := o.statefulSets["workerscope"]
			svc := o.services[ss.Spec.ServiceName]
			port := svc.Spec.Ports[slices.IndexFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == "http" })].Port
			n := int(*ss.Spec.Replicas)
			replicas[target] = n
			_, _, conf := routerConf(t, o)
			ups := upstreams(conf)
			for _, name := range []string{"workerscope_sessions", "workerscope_any"} {
				got := ups[name]
				if len(got) != n {
					t.Fatalf("upstream %s has %d servers, the StatefulSet %d replicas: %v", name, len(got), n, got)
				}
				for i, addr := range got {
					m := podDNSName.FindStringSubmatch(addr)
					want := []string{ss.Name, strconv.Itoa(i), ss.Spec.ServiceName, ss.Namespace, strconv.Itoa(int(port))}
					if m == nil || !slices.Equal(m[1:], want) {
						t.Errorf("upstream %s server %d is %s, want %s-%d.%s.%s.svc.cluster.local:%d", name, i, addr, ss.Name, i, ss.Spec.ServiceName, ss.Namespace, port)
					}
				}
			}
			locs := instanceLoc.FindAllStringSubmatch(conf, -1)
			if len(locs) != n {
				t.Fatalf("%d /i/<n>/ locations, %d replicas", len(locs), n)
			}
			for i := range n {
				u := ups[fmt.Sprintf("workerscope_%d", i)]
				if len(u) != 1 || u[0] != ups["workerscope_sessions"][i] {
					t.Errorf("upstream workerscope_%d is %v, want pod %d's name", i, u, i)
				}
				if locs[i][1] != strconv.Itoa(i) || locs[i][2] != strconv.Itoa(i) {
					t.Errorf("location %d: %v", i, locs[i])
				}
			}
			if !strings.Contains(conf, fmt.Sprintf("(n = 0..%d)", n-1)) {
				t.Error("the 404 answer does not name the instance range")
			}
			if strings.Count(conf, "\n    listen ") != 1 || !strings.Contains(conf, "\n    listen "+render.RouterListen+";") {
				t.Errorf("the router does not listen on %s", render.RouterListen)
			}
		})
	}
	if b, o := replicas[render.BaseDir], replicas[render.OverlaysDir+"/scale-5"]; b != 3 || o != 5 {
		t.Errorf("replicas: base %d, overlay scale-5 %d; want 3 and 5", b, o)
	}
}

// What is checked in equals what the generator renders from the template
// and the kustomizations: run `make k8s-router` when this fails.
func TestGeneratedRouterConfigsUpToDate(t *testing.T) {
	files, err := render.Generated(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 {
		t.Errorf("%d generated files, want 3 (plain, base, scale-5): %v", len(files), files)
	}
	for p, want := range files {
		got, err := os.ReadFile(filepath.Join(root, p))
		if err != nil || string(got) != want {
			t.Errorf("%s differs from what deploy/nginx/workerscope.conf.tmpl renders (%v): run `make k8s-router`", p, err)
		}
	}
}

// The router Deployment: selectors, the Service's port, an unprivileged
// pod, a start script that sh can parse, the config and script both
// mounted from the generated ConfigMap.
func TestRouterDeployment(t *testing.T) {
	o := load(t, render.KubeDir)
	d, cm, _ := routerConf(t, o)
	checkSelector(t, "Deployment workerscope-router", d.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
	svc := o.services["workerscope-router"]
	if svc == nil {
		t.Fatal("no Service workerscope-router")
	}
	checkSelector(t, "Service workerscope-router", svc.Spec.Selector, d.Spec.Template.Labels)
	pod := d.Spec.Template.Spec
	checkPod(t, o, "workerscope-router", &pod)
	c := container(t, pod.Containers, "nginx")
	for _, p := range svc.Spec.Ports {
		i := slices.IndexFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == p.TargetPort.StrVal })
		if i < 0 || strconv.Itoa(int(c.Ports[i].ContainerPort)) != render.RouterListen {
			t.Errorf("Service workerscope-router targets %q, not the container's port %s", p.TargetPort.StrVal, render.RouterListen)
		}
	}
	script, ok := cm.Data["run.sh"]
	if !ok || !slices.Contains(c.Command, "/etc/workerscope-router/run.sh") {
		t.Fatalf("the router does not run run.sh of ConfigMap %s: %v", cm.Name, c.Command)
	}
	cmd := exec.Command("sh", "-n")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("sh -n run.sh: %v\n%s", err, out)
	}
	if !strings.HasPrefix(cm.Name, "workerscope-router-") {
		t.Errorf("the router ConfigMap %s has no content hash: a new upstream list would not roll the router", cm.Name)
	}
}

// The real Secrets' env files are never committed.
func TestSecretEnvFilesIgnored(t *testing.T) {
	for _, f := range []string{"workerscope-token.env", "otel-gateway.env"} {
		p := filepath.Join("base", "secrets", f)
		if _, err := os.Stat(p + ".example"); err != nil {
			t.Error(err)
		}
		if err := exec.Command("git", "check-ignore", "-q", p).Run(); err != nil {
			t.Errorf("%s is not ignored by git: %v", p, err)
		}
	}
}
